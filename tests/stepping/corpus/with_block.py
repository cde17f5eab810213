# commands: step step step step step step step step step
class Ctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


with Ctx() as c:  # @start
    x = 1
print(x)
