# commands: next next next next
def f(x):
    return x + 1


data = [f(x) for x in range(3)]  # @start
more = {x for x in data}
print(data, more)
