"""Run a callable on the main thread, from any thread, with ``Py_AddPendingCall``.

The main thread runs it between two bytecodes, as it runs signal handlers: the way to
install a signal handler or a tracer there from the server thread.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Callable, List

__all__ = ["call_on_main_thread"]

_PENDING_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_keep: List[object] = []  # C thunks must outlive their call: keep them all (they are rare)


def call_on_main_thread(fn: Callable[[], None]) -> None:
    """Schedule ``fn()`` on the main thread; it runs when that thread next runs Python
    code. Errors it raises are printed to stderr. RuntimeError if the queue is full."""

    def thunk(_arg: object) -> int:
        try:
            fn()
        except Exception:
            import traceback

            print("framebridge: a call on the main thread failed", file=sys.stderr)
            traceback.print_exc()
        return 0

    cfunc = _PENDING_FUNC(thunk)
    _keep.append(cfunc)
    add = ctypes.pythonapi.Py_AddPendingCall
    add.argtypes = [_PENDING_FUNC, ctypes.c_void_p]
    add.restype = ctypes.c_int
    if add(cfunc, None) != 0:
        raise RuntimeError("Py_AddPendingCall failed (queue full)")
