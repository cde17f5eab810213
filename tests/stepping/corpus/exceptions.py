# commands: step step step step step step step
def raiser():
    x = 1
    raise ValueError(x)


def catcher():
    try:
        raiser()
    except ValueError:
        handled = True
    return handled


print(catcher())  # @start
