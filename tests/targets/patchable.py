"""A loop whose every round calls functions that tests patch (tests/test_patch.py).

Round ``i`` pauses at ``@pause`` (``bridge.set_trace()``), then prints
``round i (scale(i), step(i), label(i), bump(i), Model.unit(), model.name, list(numbers(2)))``
through references taken *before* any patch: a callback in a list, a bound method, a
``functools.wraps``-decorated function, a closure. argv[1]: the number of rounds (3).
"""
import functools
import sys

import bridge

LIMIT = 5


def scale(x):
    return x * 2  # @scale_body


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


@timed
def label(x):
    return "v%d" % x


class Model:
    def __init__(self, k):
        self.k = k

    def step(self, x):
        return x + self.k  # @step_body

    @staticmethod
    def unit():
        return 1

    @property
    def name(self):
        return "model"


def make_counter(start):
    unit = 1  # a local that bump does not use
    def bump(n):
        return start + n
    return bump


def numbers(n):
    for i in range(n):
        yield i


def main(rounds):
    model = Model(10)
    step = model.step  # a bound method, taken before any patch
    callbacks = [scale]  # a callback held in a list
    bump = make_counter(100)
    for i in range(rounds):
        out = (callbacks[0](i), step(i), label(i), bump(i), Model.unit(), model.name, list(numbers(2)))  # @body
        bridge.set_trace()  # @pause
        print("round", i, out, flush=True)  # @print
    print("done", flush=True)


main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
