# commands: next next next next next
def classify(n):
    if n < 0:  # @start
        return "neg"
    elif n == 0:
        return "zero"
    else:
        return "pos"


print(classify(5))
