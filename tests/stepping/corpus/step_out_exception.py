# commands: step_out step step
def inner():
    raise ValueError("x")  # @start


def middle():
    inner()
    return "not reached"


def outer():
    try:
        middle()
    except ValueError:
        return "caught"


print(outer())
