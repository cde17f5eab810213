# commands: step step step step step
def f(a, b):
    return a + b


x = f(
    1,  # @start
    2,
)
print(x)
