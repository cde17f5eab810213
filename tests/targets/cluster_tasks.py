"""Task functions for the Dask and Ray tests (workers import this module by name:
the tests put tests/targets on their PYTHONPATH).

``scaled(n)`` pauses with ``factor = 0`` and returns ``n * factor``; ``where_am_i()``
returns the worker process's pid and the thread it ran on, without pausing.
"""

import os
import threading

import bridge


def scaled(n):
    factor = 0
    bridge.set_trace(timeout=120)  # @pause
    return n * factor


def where_am_i():
    return os.getpid(), threading.current_thread().name


class Counter:
    """A Ray actor: ``add(n)`` pauses with ``step = 0`` and adds ``n * step``."""

    def __init__(self):
        self.total = 0

    def add(self, n):
        step = 0
        bridge.set_trace(timeout=120)  # @actor_pause
        self.total += n * step
        return self.total
