# commands: continue continue continue
def run(n):
    s = 0  # @start
    for i in range(n): s += i  # @bp if i == 2
    return s


print(run(5))
