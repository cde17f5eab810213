# commands: next next next
def work(x):
    y = x * 3  # @bp
    return y


a = 1  # @start
b = work(a)
print(b)
