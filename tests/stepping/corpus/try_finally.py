# commands: step step step step step step
def run():
    try:
        return 1  # @start
    finally:
        done = True


print(run())
