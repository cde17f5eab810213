"""The debugging engine: breakpoints, stepping and pausing (no sockets, no I/O).

Like CPython's ``bdb`` it decides *where* a thread stops and leaves *what happens
while it is stopped* to a front end. When a thread must stop, the engine calls the
front end's hook on that thread::

    on_stop(frame, reason, info) -> action

``reason`` is one of :data:`REASONS`:

* ``"breakpoint"``: ``info = {"breakpoint": id, "hits": n, "temporary": bool}``,
  plus ``"condition_error": "<repr>"`` when the condition raised (it then counts as
  true, as in pdb, so that a broken condition is seen rather than silently ignored).
* ``"step"``: a ``step``/``next``/``step_out`` finished; ``info = {"action": action}``.
* ``"pause"``: :meth:`Debugger.request_pause` took effect; ``info = {"mechanism": ...}``.

The engine never stops for exceptions ("post-mortem" belongs to the front end).

``action`` is one of :data:`ACTIONS` and has pdb's meaning (docs/stepping.md):

* ``"continue"``: run until a breakpoint or a pause request.
* ``"step"``: stop at the next line executed by this thread, anywhere (into calls).
* ``"next"``: stop at the next line of this frame; once the frame has returned (or
  been unwound by an exception), at the next line anywhere (pdb's ``next`` at a
  return, then ``step``).
* ``"step_out"``: run until this frame returns or unwinds, then stop at the next line
  anywhere: pdb's ``return`` followed by ``step``. After ``x = a() + b()`` returns
  from ``a``, the next line is ``b``'s first.

Stepping never stops in framebridge's own code nor in what it calls (pyzmq under the
pause loop, ``traceback`` under the post-mortem hook), and ends with the program, as
pdb's does (see ``scope.py``).

Modules: ``engine`` (the :class:`Debugger`), ``breakpoints`` (the table), ``scope``
(where a stop may happen), one module per backend, ``signal_pause`` (SIGUSR1 before
3.12) and ``pending_call``. Backends, chosen for overhead (tests/bench/bench_tracing.py):

* ``monitoring`` (3.12+): ``sys.monitoring`` events only on the code objects that
  hold a breakpoint or belong to a stack being stepped or paused. All threads.
* ``codepatch`` (3.9-3.11): a breakpoint is a probe call compiled into a copy of its
  function's code, swapped in with ``bridge.codeswap``; code without breakpoints runs
  at native speed, in every thread. Only a thread that steps, or whose running frame
  holds a breakpoint, is traced (``sys.settrace``), and only while it must be.
* ``settrace`` (3.9-3.11 without the ``bytecode`` library): a global tracer that
  declines every frame it can.
"""

from .breakpoints import Breakpoint
from .engine import ACTIONS, REASONS, Debugger, StopHandler, get_debugger

__all__ = ["ACTIONS", "REASONS", "Breakpoint", "Debugger", "StopHandler", "get_debugger"]
