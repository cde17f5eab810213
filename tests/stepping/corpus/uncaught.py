# commands: step step step step step step
def fail():
    raise RuntimeError("boom")


x = 1  # @start
fail()
print("not reached")
