# commands: step step step step step step
def make(k):
    def add(x):
        return x + k
    return add


add2 = make(2)  # @start
print(add2(1))
