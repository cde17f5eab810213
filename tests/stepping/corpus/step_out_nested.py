# commands: step_out step_out step
def leaf(x):
    y = x + 1  # @start
    return y * 2


def middle(x):
    a = leaf(x)
    b = a + 1
    return b


def outer():
    r = middle(1)
    return r


print(outer())
