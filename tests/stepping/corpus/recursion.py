# commands: next next next next step step
def fact(n):
    if n <= 1:  # @start
        return 1
    return n * fact(n - 1)


print(fact(3))
