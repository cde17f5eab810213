"""The event listener: one thread that owns a session's event channel.

It subscribes to the target's events, keeps the session's :class:`PauseState` current
and calls the session's subscribers (such as the DebugPanel) on its own thread. Having
a channel of its own means no ZeroMQ socket is ever touched by two threads.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Dict, List, Optional

import zmq

from bridge import keys

from .errors import SessionLost
from .pause_state import PauseState
from .transport import Channel

#: ``callback(event, body)``: ``paused``, ``resumed``, ``lane``, or ``lost`` (``{"error": text}``).
EventCallback = Callable[[str, Dict[str, Any]], None]


class EventListener:
    """Subscribes to one target's events and feeds them to a PauseState and to callbacks."""

    def __init__(self, context: zmq.Context, info: Dict[str, Any], keypair: keys.KeyPair,
                 state: PauseState) -> None:
        self.pid = int(info["pid"])
        self.channel = Channel(context, info, keypair)
        self.state = state
        self.failure: Optional[BaseException] = None
        self._callbacks: List[EventCallback] = []
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"framebridge-events-{self.pid}", daemon=True)

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback`` for every event from now on; returns an unsubscribe function."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def start_and_subscribe(self, timeout: float) -> None:
        """Start the thread; return once the target has accepted the subscription."""
        self._thread.start()
        if not self._subscribed.wait(timeout):
            self.stop()
            if self.failure is not None:
                raise self.failure
            raise SessionLost(f"pid {self.pid} did not accept an event subscription within {timeout:g}s")
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """Stop the thread (waits a little for it) and close the channel."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)
        self.channel.close()

    def _subscribe(self) -> None:
        request_id = self.channel.send("subscribe")
        while not self._stop.is_set():
            try:
                header, _ = self.channel.receive(0.5, want_id=request_id, on_other=self._deliver)
            except TimeoutError:
                continue
            self.state.reset(header["result"]["paused"])
            self._subscribed.set()
            return

    def _deliver(self, header: Dict[str, Any], values: List[Any]) -> None:
        event = header.get("event")
        if isinstance(event, str):
            self.state.apply(event, header)
            self._notify(event, header)

    def _notify(self, event: str, body: Dict[str, Any]) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event, body)
            except Exception as exc:  # a broken callback must not kill the listener
                print(f"framebridge: event callback failed: {exc!r}", file=sys.stderr)

    def _run(self) -> None:
        try:
            self._subscribe()
            # The subscription's reply proves one handshake, whether or not its monitor
            # event has been read yet: counting it late must not look like a reconnect
            # (a spurious re-subscribe replaces every PauseInfo object).
            handshakes = max(self.channel.handshakes, 1)
            while not self._stop.is_set():
                try:
                    header, values = self.channel.receive(0.2)
                except TimeoutError:
                    pass
                else:
                    self._deliver(header, values)
                if self.channel.handshakes > handshakes:
                    # Reconnected (the target dropped us after a network hiccup): re-subscribe.
                    self._subscribe()
                    handshakes = max(self.channel.handshakes, handshakes + 1)
        except BaseException as exc:
            if not self._stop.is_set():
                self.failure = exc if isinstance(exc, Exception) else SessionLost(str(exc))
                self.state.lost(self.failure)
                for callback in list(self._callbacks):
                    try:
                        callback("lost", {"error": str(exc)})
                    except Exception:
                        pass
