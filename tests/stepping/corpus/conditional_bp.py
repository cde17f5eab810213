# commands: continue continue next continue
total = 0  # @start
for i in range(6):
    total += i  # @bp if i in (2, 4)
print(total)
