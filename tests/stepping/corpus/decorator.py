# commands: step step step step step step step
import functools


def trace(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper


@trace
def double(x):
    return x * 2


print(double(4))  # @start
