# commands: step step step step step step step
def g(x):
    return x + 1


def f(x):
    return g(g(x))


print(f(1))  # @start
