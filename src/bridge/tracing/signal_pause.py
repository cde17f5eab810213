"""Pausing the main thread with SIGUSR1 (before 3.12, where nothing else reaches a
running thread).

The signal handler runs on the main thread between two bytecodes and hands the frame it
interrupted to the engine (``dispatch_signal_pause``). A program's own SIGUSR1 handler
is chained to: only the signals we sent are pause requests.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional

from .pending_call import call_on_main_thread

__all__ = ["SignalPauser"]


class SignalPauser:
    """The SIGUSR1 handler and the pause requests it serves, for one engine.

    ``engine`` needs ``in_stop(tid)`` and ``dispatch_signal_pause(frame)``; a request that
    arrives while the thread is in a stop that is ending is kept and sent again by
    :meth:`resend_deferred`.
    """

    SIGNAL = getattr(signal, "SIGUSR1", None)

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.previous: Any = None
        self.requested = 0  # pause requests not yet served by the handler
        self.installed = threading.Event()

    def _install_now(self) -> None:
        current = signal.getsignal(self.SIGNAL)
        if current == self.handler:
            self.installed.set()
            return
        if current is None:
            raise RuntimeError(
                "SIGUSR1 has a handler installed from C; framebridge cannot chain to it, "
                "so it cannot pause the main thread"
            )
        self.previous = current
        signal.signal(self.SIGNAL, self.handler)
        self.installed.set()

    def install(self, timeout: Optional[float]) -> bool:
        """Install the handler (see ``Debugger.install_signal_handler``)."""
        if self.SIGNAL is None:
            raise RuntimeError("this platform has no SIGUSR1; pausing needs Python 3.12+")
        if threading.current_thread() is threading.main_thread():
            self._install_now()
            return True
        if not self.installed.is_set():
            call_on_main_thread(self._install_now)
        return self.installed.wait(timeout)

    def uninstall(self) -> None:
        """Put the previous handler back (main thread only)."""
        if self.installed.is_set() and signal.getsignal(self.SIGNAL) == self.handler:
            signal.signal(self.SIGNAL, self.previous if self.previous is not None else signal.SIG_DFL)
        self.installed.clear()
        self.previous = None
        self.requested = 0

    def request(self) -> str:
        """Ask the main thread to pause; a description of how."""
        if self.SIGNAL is None:
            raise RuntimeError("this platform has no SIGUSR1; pausing needs Python 3.12+")
        main = threading.main_thread().ident
        if self.installed.is_set() and signal.getsignal(self.SIGNAL) != self.handler:
            raise RuntimeError("framebridge's SIGUSR1 handler was replaced by the program; cannot pause")
        self.requested += 1
        if self.installed.is_set():
            signal.pthread_kill(main, self.SIGNAL)
            return "SIGUSR1 to the main thread"

        def install_and_signal() -> None:
            self._install_now()
            signal.pthread_kill(main, self.SIGNAL)

        if threading.current_thread() is threading.main_thread():
            install_and_signal()
        else:
            call_on_main_thread(install_and_signal)
        return "SIGUSR1 to the main thread (handler installed by a pending call)"

    def resend_deferred(self, tid: int) -> None:
        """At the end of a stop of thread ``tid``: signal again a request that arrived
        while the stop was ending (the handler kept it)."""
        if self.requested > 0 and tid == threading.main_thread().ident and self.installed.is_set():
            signal.pthread_kill(tid, self.SIGNAL)

    def handler(self, signum: int, frame: Optional[FrameType]) -> None:
        """The SIGUSR1 handler: a pause request, or a signal for the program's handler."""
        if self.requested <= 0:
            self._chain(signum, frame)
            return
        if self.engine.in_stop(threading.get_ident()):
            # still inside a stop that is ending (the client resumed it just before
            # asking again): keep the request; it is sent again at the stop's end
            return
        self.requested = 0
        self.engine.dispatch_signal_pause(frame)

    def _chain(self, signum: int, frame: Optional[FrameType]) -> None:
        prev = self.previous
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_DFL:
            # a SIGUSR1 we did not send: do what the default would (terminate)
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        # SIG_IGN: ignore
