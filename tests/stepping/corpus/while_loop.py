# commands: next next next next next next next next
n = 3  # @start
while n > 0:
    n -= 1
print("done")
