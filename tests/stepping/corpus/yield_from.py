# commands: step step step step step step step step
def inner():
    yield 1
    yield 2


def outer():
    yield from inner()


print(list(outer()))  # @start
