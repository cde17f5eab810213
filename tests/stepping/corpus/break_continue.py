# commands: next next next next next next next next next next
out = []  # @start
for i in range(4):
    if i == 1:
        continue
    if i == 3:
        break
    out.append(i)
print(out)
