# commands: step step step step step step step step
class Swallow:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return True


def run():
    with Swallow():  # @start
        raise ValueError("x")
    return "after"


print(run())
