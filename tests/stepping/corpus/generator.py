# commands: step step step step step step step step step step
def gen(n):
    for i in range(n):
        yield i * 2


total = 0
for v in gen(2):  # @start
    total += v
print(total)
