# commands: step step_out step step_out step
def a():
    return 1


def b():
    return 2


x = a() + b()  # @start
print(x)
