# commands: next next continue next next
def scan(items):
    found = []
    for item in items:
        if item % 2:  # @bp if item == 3
            found.append(item)
    return found


odd = scan(range(5))  # @start
count = len(odd)
print(count)
