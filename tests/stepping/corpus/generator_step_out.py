# commands: step_out step step
def gen():
    x = 1  # @start
    yield x
    yield 2


for v in gen():
    w = v
print("end")
