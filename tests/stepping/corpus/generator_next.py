# commands: next next next next next next
def gen():
    yield 1  # @start
    yield 2
    return


for v in gen():
    print(v)
print("end")
