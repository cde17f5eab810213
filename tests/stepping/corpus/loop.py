# commands: next next next next next next next next next
total = 0
for i in range(3):  # @start
    total += i
    total *= 2
print(total)
