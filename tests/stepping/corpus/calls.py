# commands: step step step step step step step step
def leaf(x):
    y = x + 1
    return y * 2


def middle(x):
    a = leaf(x)
    b = leaf(a)
    return a + b


r = middle(1)  # @start
print(r)
