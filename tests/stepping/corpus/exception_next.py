# commands: next next next next next
def raiser():
    raise KeyError("k")


def run():
    try:
        raiser()  # @start
    except KeyError:
        pass
    return 1


print(run())
