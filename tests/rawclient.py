"""One raw client for the tests that speak the protocol by hand.

:class:`RawClient` is a ZeroMQ DEALER to a target's server socket or to a pause's lane,
with real CURVE keys (the user's, a given pair, or none at all for a plaintext peer) and
none of our client code: it sends exactly the frames it is given, so a test can send a
malformed, truncated or hostile message and check the reply. Every receive has a
deadline and fails with a message that says what was missing.

    with RawClient.to(target) as raw:                     # the user's key, the server socket
        reply = raw.request("eval", {"expr": "x"}, pause_id=3)
        assert reply.error_type == "NotPaused"
        err = raw.ask([b"\\xff not json"]).error           # any frames at all

``where`` may be a connection-info dict, a :class:`~target_process.Target`, a
``client.Session`` or the in-process harness (anything with ``connection_info()`` or
``info``); ``lane=pause`` connects to that pause's lane instead (its port and key).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import zmq
from zmq.utils.monitor import parse_monitor_message

from bridge import keys, protocol

#: Default deadline for one reply, seconds.
REPLY_TIMEOUT = 5.0

_ids = itertools.count(1_000_000)  # far from the ids a Session uses: a mix-up shows


def stranger_keypair() -> keys.KeyPair:
    """A fresh CURVE key pair that no target authorized."""
    public, secret = zmq.curve_keypair()
    return keys.KeyPair(public.decode("ascii"), secret.decode("ascii"))


def connection_info(where: Any) -> Dict[str, Any]:
    """The connection info (endpoint, server_key, pid, ...) of ``where``: a dict as it is,
    else ``where.connection_info()`` (a Target: waits for its file) or ``where.info``."""
    if isinstance(where, Mapping):
        return dict(where)
    if hasattr(where, "connection_info"):
        return dict(where.connection_info())
    if hasattr(where, "info"):
        return dict(where.info)
    raise TypeError(f"cannot find a target's connection info in {type(where).__name__}")


def lane_endpoint(info: Mapping[str, Any], pause: Any) -> "tuple[str, str]":
    """(endpoint, server key) of ``pause``'s lane: ``pause`` is a client PauseInfo (its
    ``extra``) or a pause's description (a dict with ``lane`` and ``lane_key``)."""
    named = pause.extra if hasattr(pause, "extra") else pause
    if "lane" not in named:
        raise AssertionError(f"the pause names no lane (yet?): {named}")
    host = protocol.endpoint_host(info["endpoint"])
    return protocol.tcp_endpoint(host, int(named["lane"])), named["lane_key"]


@dataclass
class RawReply:
    """A message the target sent: its JSON header and the frames after it."""

    header: Dict[str, Any]
    frames: List[bytes] = field(default_factory=list)

    @property
    def ok(self) -> Optional[bool]:
        """The header's ``ok`` (None for an event)."""
        return self.header.get("ok")

    @property
    def result(self) -> Any:
        """A successful reply's ``result``."""
        return self.header.get("result")

    @property
    def error(self) -> Dict[str, Any]:
        """An error reply's ``error`` ({} for a success)."""
        return self.header.get("error") or {}

    @property
    def error_type(self) -> Optional[str]:
        """An error reply's kind (``ProtocolError``, ``NotPaused``, ...)."""
        return self.error.get("type")


class RawClient:
    """A DEALER to ``endpoint``: CURVE with ``keypair`` (default: the user's own key, from
    this test's config dir) against ``server_key``, or no CURVE at all with ``plaintext``.

    ``monitor``: a mask of ZeroMQ socket events (``zmq.EVENT_*``) to watch, read with
    :meth:`wait_event`. Use one client from one thread; :meth:`close` (or ``with``) ends it.
    """

    def __init__(self, endpoint: str, server_key: Optional[str] = None, *, keypair: Optional[keys.KeyPair] = None,
                 plaintext: bool = False, monitor: int = 0) -> None:
        self.endpoint = endpoint
        self.keypair = None if plaintext else (keypair or keys.load_client_keypair())
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        if self.keypair is not None:
            if not server_key:
                raise ValueError("a CURVE client needs the server's public key (or plaintext=True)")
            self.socket.curve_serverkey = server_key.encode("ascii")
            self.socket.curve_publickey = self.keypair.public.encode("ascii")
            self.socket.curve_secretkey = self.keypair.secret.encode("ascii")
        if endpoint.startswith("tcp://["):
            self.socket.ipv6 = True
        self.monitor = self.socket.get_monitor_socket(monitor) if monitor else None
        self.socket.connect(endpoint)
        self.closed = False

    @classmethod
    def to(cls, where: Any, *, lane: Any = None, keypair: Optional[keys.KeyPair] = None, plaintext: bool = False,
           monitor: int = 0) -> "RawClient":
        """A client to ``where``'s server socket, or with ``lane=pause`` to that pause's lane."""
        info = connection_info(where)
        endpoint, server_key = (info["endpoint"], info["server_key"]) if lane is None else lane_endpoint(info, lane)
        return cls(endpoint, server_key, keypair=keypair, plaintext=plaintext, monitor=monitor)

    # --- sending -----------------------------------------------------------------------------

    def send(self, frames: Sequence[Any], *, copy: bool = True) -> None:
        """Send ``frames`` exactly as given (bytes, or anything ``send_multipart`` takes;
        ``copy=False`` for big ``zmq.Frame`` parts)."""
        self.socket.send_multipart(list(frames), copy=copy)

    def send_header(self, header: Mapping[str, Any], *values: Any) -> None:
        """Send a header dict as JSON (as it is: nothing added) and ``values`` frames after it."""
        self.send([json.dumps(header).encode(), *values])

    def send_request(self, op: str, args: Optional[Dict[str, Any]] = None, values: Optional[Sequence[Any]] = None,
                     **transport: Any) -> int:
        """Send a well-formed request (``protocol.request_message``); transport fields
        (``pause_id``, ``release``, ``bulk``, ``bulk_in``) as keywords. Returns its id."""
        request_id = next(_ids)
        self.send(protocol.request_message(request_id, op, args, list(values) if values else None, **transport))
        return request_id

    # --- receiving -----------------------------------------------------------------------------

    def receive(self, timeout: float = REPLY_TIMEOUT) -> RawReply:
        """The next message (AssertionError if none comes within ``timeout`` seconds)."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from {self.endpoint} within {timeout:g}s")
        first, *rest = self.socket.recv_multipart()
        try:
            header = json.loads(first)
        except ValueError:
            raise AssertionError(f"{self.endpoint} sent a header that is not JSON: {first[:200]!r}") from None
        if not isinstance(header, dict):
            raise AssertionError(f"{self.endpoint} sent a header that is not an object: {header!r}")
        return RawReply(header, rest)

    def request(self, op: str, args: Optional[Dict[str, Any]] = None, values: Optional[Sequence[Any]] = None, *,
                timeout: float = REPLY_TIMEOUT, **transport: Any) -> RawReply:
        """Send a request and return its reply (checked to answer this request's id)."""
        request_id = self.send_request(op, args, values, **transport)
        reply = self.receive(timeout)
        assert reply.header.get("id") == request_id, f"a reply to another request: {reply.header}"
        return reply

    def ask(self, message: Union[Sequence[Any], Mapping[str, Any]], timeout: float = REPLY_TIMEOUT) -> RawReply:
        """Send one message (a header dict, or frames as they are) and return the reply."""
        if isinstance(message, Mapping):
            self.send_header(message)
        else:
            self.send(message)
        return self.receive(timeout)

    def exchange(self, messages: Sequence[Sequence[Any]], timeout: float = REPLY_TIMEOUT) -> List[Dict[str, Any]]:
        """Send every message, then collect exactly one reply header per message (each
        within ``timeout``); every one must be a reply (``ok`` true or false)."""
        for frames in messages:
            self.send(frames)
        headers: List[Dict[str, Any]] = []
        for _ in messages:
            try:
                header = self.receive(timeout).header
            except AssertionError as exc:
                raise AssertionError(f"{exc} ({len(headers)} of {len(messages)} replies came)") from None
            assert "ok" in header, f"not a reply: {header}"
            headers.append(header)
        return headers

    def expect_nothing(self, within: float = 0.2) -> None:
        """Assert that no message arrives for ``within`` seconds (a refused peer gets no answer)."""
        if self.socket.poll(int(within * 1000)):
            raise AssertionError(f"{self.endpoint} answered: {self.socket.recv_multipart()[:2]!r}")

    def wait_event(self, events: int, timeout: float = REPLY_TIMEOUT) -> Dict[str, Any]:
        """The next socket event of ``events`` (a ``zmq.EVENT_*`` mask) from the monitor
        (others of the monitor's mask are skipped); AssertionError at the deadline."""
        if self.monitor is None:
            raise ValueError("this client watches no events: pass monitor=zmq.EVENT_...")
        deadline = time.monotonic() + timeout
        seen: List[int] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.monitor.poll(max(1, int(left * 1000))):
                raise AssertionError(f"no socket event {events:#x} within {timeout:g}s (saw {seen})")
            event: Dict[str, Any] = dict(parse_monitor_message(self.monitor.recv_multipart()))
            kind = int(event["event"])
            if kind & events:
                return event
            seen.append(kind)

    # --- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket (and monitor) and end the context. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.monitor is not None:
            try:
                self.socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self.monitor.close(0)
        self.socket.close(0)
        self.context.term()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
