# commands: step step step step step step
s = 0
for i in range(4): s += i  # @start
print(s)
