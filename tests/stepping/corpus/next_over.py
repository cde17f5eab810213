# commands: step next next next next next
def leaf(x):
    return x * 2


def middle(x):
    a = leaf(x)
    b = leaf(a)
    return a + b


def outer():
    r = middle(1)
    r += 1
    return r


total = outer()  # @start
print(total)
