# commands: step step step step step
n = 3  # @start
while n > 0: n -= 1
print("done")
