# commands: step step step step step step step
def sq(x):
    return x * x


t = sum(sq(x) for x in range(2))  # @start
print(t)
