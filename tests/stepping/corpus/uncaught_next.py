# commands: next next next next
def fail():
    raise RuntimeError("boom")


def run():
    fail()  # @start
    return 2


run()
