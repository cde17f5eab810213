# commands: next next next next
def main():
    a = 1  # @start
    return a


main()
