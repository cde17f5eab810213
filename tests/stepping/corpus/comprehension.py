# commands: step step step step step step step step
def f(x):
    return x + 1


data = [f(x) for x in range(2)]  # @start
keys = {x: x for x in range(2)}
print(data, keys)
