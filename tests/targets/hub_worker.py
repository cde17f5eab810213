"""A worker for the hub tests: ``hub_worker.py [N] [--listen]``.

Prints ``pausing <pid>``, then pauses in ``work(N)`` at ``bridge.set_trace()`` with the
local ``x = 41 + N``; once continued prints ``result <2 * x>`` and exits 0. With
``--listen`` it first calls ``bridge.listen()`` (so it dials its hub before any pause),
prints ``listening <pid>`` and loops in ``spin()`` until its local ``spinning`` is set false.
"""

import os
import sys

import bridge


def work(n):
    x = 41 + n
    bridge.set_trace()  # @pause
    return x * 2


def spin():
    spinning, x = True, 0
    while spinning:  # @spin
        x += 1
    return x


args = [a for a in sys.argv[1:] if not a.startswith("--")]
n = int(args[0]) if args else 0
if "--listen" in sys.argv:
    bridge.listen()
    print("listening", os.getpid(), flush=True)
    spin()
print("pausing", os.getpid(), flush=True)
print("result", work(n), flush=True)
