"""Pauses in a function with the local ``x = 41``; prints ``x <value>`` once resumed."""
import bridge


def f():
    x = 41
    bridge.set_trace()  # @pause
    print("x", x, flush=True)


f()
