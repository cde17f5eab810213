"""The message spec: one module, used by the target (``bridge``) and the notebook (``client``).

A message is a list of ZeroMQ frames: ``[header, value frames...]``. The header is UTF-8
JSON, always safe to parse and to reject; the value frames are one pickle protocol 5
stream and its out-of-band buffers (``wire.py``). docs/protocol.md describes every field;
this module is where they are built and checked.

Request header::

    v         PROTOCOL_VERSION
    id        int or str, chosen by the client, echoed in the reply
    op        the operation's name
    args      JSON object: the op's own arguments
    nbuf      how many value frames follow
    pause_id  (frame ops) the pause the request is meant for; another pause refuses it
    release   [[ref, count], ...] live-reference handles the client dropped; the target
              applies them when it accepts the request, before routing any op
    bulk      the bulk mode ("shm" or "aes") in which the client takes big reply buffers
    bulk_in   descriptor of this request's own value frames that travel outside the message

Reply header: ``v``, ``id``, ``ok``, ``nbuf``; ``result`` (JSON) when ``ok``, else
``error: {type, message, traceback, ...}``; ``bulk``: the descriptor of reply buffers
that travel outside the message. Event header: ``v``, ``event``, ``time``, ``nbuf`` and
the event's own fields.

A header stays within ``MAX_HEADER_BYTES`` whatever it carries: when its fields would
make it bigger (a long output, a deep stack, thousands of releases), every field but
the envelope (``ENVELOPE_FIELDS``) moves into one JSON frame after the value frames,
and ``spill`` names those fields. The receiver parses the small header first, as always,
then merges the spilled fields back: a big result travels as a frame, not as a refusal.

Transport fields (``pause_id``, ``release``, ``bulk``, ``bulk_in``) are header fields,
never op arguments: a handler sees only ``args`` and the value frames.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Protocol, Sequence

import zmq

PROTOCOL_VERSION = 2

#: Largest header frame a side parses; anything bigger is refused unread. A sender moves
#: what does not fit into a spill frame (``spill`` field, docs/protocol.md).
MAX_HEADER_BYTES = 64 * 1024
#: Header fields that never spill: what a receiver checks before anything else.
ENVELOPE_FIELDS = frozenset({"v", "nbuf", "id", "op", "ok", "event", "spill"})
#: Largest whole message a socket accepts (ZMQ_MAXMSGSIZE): bigger values take the bulk path.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Buffers smaller than this are copied by ZeroMQ anyway; no point sending them zero-copy.
ZERO_COPY_THRESHOLD = 64 * 1024

#: ZeroMQ heartbeats on every socket of both sides: a peer that vanished without closing
#: (a killed notebook, a killed job) is dropped within the timeout.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 5000

#: Default size limit (bytes) above which ``jump_context`` mounts a value live. Big buffers
#: take the bulk path, so this bounds memory in the notebook more than time.
DEFAULT_SIZE_LIMIT = 256 * 1024 * 1024

#: Bulk modes a request's ``bulk`` field may name (docs/protocol.md, "Big values").
BULK_MODES = ("shm", "aes")

#: Binary operators a live reference forwards, each also reflected (``__r*__``) and in place (``__i*__``).
BINARY_OPERATORS = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
                    "lshift", "rshift")
#: Special methods a live reference forwards as they are: the client defines each on its
#: proxy class (client/proxy.py), the target runs them (bridge/mount_ops.py).
FORWARDED_SPECIALS = (
    "__len__", "__iter__", "__next__", "__reversed__", "__getitem__", "__setitem__", "__delitem__",
    "__contains__", "__bool__", "__str__", "__hash__", "__int__", "__float__", "__index__", "__call__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__",
    "__invert__",
) + tuple(f"__{prefix}{op}__" for op in BINARY_OPERATORS for prefix in ("", "r", "i"))
#: Every special method a ``ref`` op may name: the forwarded ones, and those the proxy
#: implements itself around a remote call (repr and dir never raise; with passes a traceback).
REF_SPECIALS = FORWARDED_SPECIALS + ("__repr__", "__dir__", "__enter__", "__exit__")

Frames = List[Any]


class ProtocolError(Exception):
    """A message that does not follow the spec. The text names the problem."""


class BadRequest(ProtocolError):
    """A request that does not follow the spec; ``request_id`` is what could be salvaged."""

    def __init__(self, request_id: Any, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


# --- headers -------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    # Sets and tuples show up in args (names lists); anything else is a bug upstream.
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable in a header")


# One encoder for every header: json.dumps with options builds a new one per call, and a
# small eval's round trip is short enough for that to show (docs/benchmarks.md).
_header_encoder = json.JSONEncoder(separators=(",", ":"), default=_json_default)
# Its C core, made once: JSONEncoder.encode makes a new one (and a closure) per call,
# which costs more than encoding a small header (3 to 4 us against 2, more in a cold
# process: a group's 64 targets, docs/benchmarks.md). No circular-reference check: a
# header is a tree of JSON values.
_c_encoder = (json.encoder.c_make_encoder(None, _json_default, json.encoder.encode_basestring_ascii, None,
                                          ":", ",", False, False, True)
              if json.encoder.c_make_encoder is not None else None)


def encode_header(header: Dict[str, Any]) -> bytes:
    """Serialise a header dict to compact JSON bytes."""
    if _c_encoder is not None:
        return "".join(_c_encoder(header, 0)).encode("ascii")
    return _header_encoder.encode(header).encode("utf-8")


def _frame_bytes(frame: Any) -> bytes:
    return frame if type(frame) is bytes else bytes(frame.buffer) if hasattr(frame, "buffer") else bytes(frame)


# The decoder's scanner, called directly: json.loads adds an encoding check and two
# whitespace matches around it (5.7 us against 1.6 here for a request header).
_scan = json.scanner.make_scanner(json.JSONDecoder())


def _json_object(data: bytes, what: str) -> Dict[str, Any]:
    try:  # the common case, a compact JSON object: anything else takes json.loads below
        text = data.decode("utf-8")
        obj, end = _scan(text, 0)
        if end == len(text) and type(obj) is dict:
            return obj
    except Exception:
        pass
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, not {type(obj).__name__}")
    return obj


def decode_header(frame: Any) -> Dict[str, Any]:
    """Parse and validate a header frame; raise ProtocolError naming what is wrong."""
    data = _frame_bytes(frame)
    if len(data) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(data)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    header = _json_object(data, "header")
    version = header.get("v")
    # type() check: JSON true and 1.0 compare equal to 1 in Python but are not a version.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})"
        )
    nbuf = header.get("nbuf", 0)
    if type(nbuf) is not int or nbuf < 0:
        raise ProtocolError(f"nbuf must be a non-negative integer, not {nbuf!r}")
    _check_args(header)
    return header


def _check_args(header: Dict[str, Any]) -> None:
    args = header.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(f"args must be a JSON object, not {type(args).__name__}")


def make_message(header: Dict[str, Any], value_frames: Optional[Frames] = None) -> Frames:
    """The frames of a message: ``header`` (with ``v`` and ``nbuf`` filled in), then value frames."""
    return _message(dict(header), value_frames)


def _message(header: Dict[str, Any], value_frames: Optional[Frames]) -> Frames:
    # Fills in ``header`` itself: for the builders below, whose header dict is their own.
    value_frames = value_frames or []
    header["v"] = PROTOCOL_VERSION
    header["nbuf"] = len(value_frames)
    encoded = encode_header(header)
    if len(encoded) <= MAX_HEADER_BYTES:
        return [encoded, *value_frames]
    # Too big for a header: everything but the envelope travels in a frame of its own, last.
    spilled = {name: header.pop(name) for name in list(header) if name not in ENVELOPE_FIELDS}
    header["spill"] = sorted(spilled)
    header["nbuf"] = len(value_frames) + 1
    return [encode_header(header), *value_frames, encode_header(spilled)]


def split_message(frames: Sequence[Any]) -> "tuple[Dict[str, Any], List[Any]]":
    """Parse a received message into (header, value frames), checking the frame count.

    Spilled fields (``spill``) are merged back into the header, and their frame is not
    one of the value frames returned.
    """
    if not frames:
        raise ProtocolError("empty message")
    header = decode_header(frames[0])
    values = list(frames[1:])
    if len(values) != header.get("nbuf", 0):
        raise ProtocolError(
            f"header announces {header.get('nbuf', 0)} value frames but {len(values)} arrived"
        )
    if "spill" in header:
        _merge_spill(header, values)
    return header, values


def _merge_spill(header: Dict[str, Any], values: List[Any]) -> None:
    """Move the fields of the spill frame (the last of ``values``) into ``header``."""
    names = header.pop("spill")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ProtocolError("spill must be a non-empty list of field names")
    envelope = ENVELOPE_FIELDS.intersection(names)
    if envelope:
        raise ProtocolError(f"spill cannot carry the envelope fields {', '.join(sorted(envelope))}")
    if not values:
        raise ProtocolError("spill announced but no frame carries it")
    spilled = _json_object(_frame_bytes(values.pop()), "the spill frame")
    if sorted(spilled) != sorted(names) or len(set(names)) != len(names):
        raise ProtocolError(f"the spill frame carries {sorted(spilled)}, the header announced {sorted(names)}")
    header.update(spilled)
    header["nbuf"] = len(values)
    _check_args(header)


# --- requests ------------------------------------------------------------------------------


def request_message(request_id: Any, op: str, args: Optional[Dict[str, Any]] = None,
                    frames: Optional[Frames] = None, *, pause_id: Optional[int] = None,
                    release: Optional[List[List[int]]] = None, bulk: Optional[str] = None,
                    bulk_in: Optional[Dict[str, Any]] = None) -> Frames:
    """The frames of a request; the transport fields go into the header only when given."""
    header: Dict[str, Any] = {"id": request_id, "op": op, "args": args or {}}
    if pause_id is not None:
        header["pause_id"] = pause_id
    if release:
        header["release"] = release
    if bulk is not None:
        header["bulk"] = bulk
    if bulk_in is not None:
        header["bulk_in"] = bulk_in
    return _message(header, frames)


class Request:
    """A request as the target received it: header fields, value frames and where it came from.

    ``identity`` is the client's ROUTER identity; ``reply`` the :class:`ReplySink` its
    reply leaves by (set by the source that took the request in).
    """

    __slots__ = ("id", "op", "args", "values", "pause_id", "release", "bulk", "bulk_in", "identity", "reply")

    def __init__(self, request_id: Any, op: str, args: Dict[str, Any], values: List[Any], *,
                 pause_id: Optional[int] = None, release: Optional[List[List[int]]] = None,
                 bulk: Optional[str] = None, bulk_in: Optional[Dict[str, Any]] = None,
                 identity: bytes = b"") -> None:
        self.id = request_id
        self.op = op
        self.args = args
        self.values = values
        self.pause_id = pause_id
        self.release = release
        self.bulk = bulk
        self.bulk_in = bulk_in
        self.identity = identity
        self.reply: Optional[ReplySink] = None

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, op={self.op!r}, args={self.args!r}, nbuf={len(self.values)})"


def parse_request(frames: Sequence[Any], identity: bytes = b"") -> Request:
    """Parse and validate a request message; BadRequest says what is wrong (and the id, if any)."""
    try:
        header, values = split_message(frames)
    except ProtocolError as exc:
        raise BadRequest(_salvage_id(frames), str(exc)) from None
    request_id = header.get("id")
    if not isinstance(request_id, (int, str)) or isinstance(request_id, bool):
        raise BadRequest(None, "header needs an integer or string 'id'")
    op = header.get("op")
    if not isinstance(op, str):
        raise BadRequest(request_id, "header needs a string 'op'")
    request = Request(request_id, op, header.get("args", {}), values, identity=identity)
    _transport_fields(request, header)
    return request


def _transport_fields(request: Request, header: Dict[str, Any]) -> None:
    """Check and copy the header's transport fields into ``request``."""
    rid = request.id
    pause_id = header.get("pause_id")
    if pause_id is not None:
        if type(pause_id) is not int:
            raise BadRequest(rid, f"'pause_id' must be an integer, not {type(pause_id).__name__}")
        request.pause_id = pause_id
    release = header.get("release")
    if release is not None:
        if not isinstance(release, list) or not all(
                isinstance(item, list) and len(item) == 2 and type(item[0]) is int and type(item[1]) is int
                for item in release):
            raise BadRequest(rid, "'release' must be a list of [ref, count] integer pairs")
        request.release = release
    bulk = header.get("bulk")
    if bulk is not None:
        if not isinstance(bulk, str) or bulk not in BULK_MODES:
            raise BadRequest(rid, f"'bulk' must be one of {', '.join(BULK_MODES)}, not {bulk!r}")
        request.bulk = bulk
    bulk_in = header.get("bulk_in")
    if bulk_in is not None:
        if not isinstance(bulk_in, dict):
            raise BadRequest(rid, f"'bulk_in' must be a JSON object, not {type(bulk_in).__name__}")
        request.bulk_in = bulk_in


def _salvage_id(frames: Sequence[Any]) -> Any:
    """Best effort: the request id of a message whose header failed validation."""
    try:
        first = frames[0]
        data = json.loads(bytes(first.buffer if hasattr(first, "buffer") else first))
        rid = data.get("id") if isinstance(data, dict) else None
        return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None
    except Exception:
        return None


# --- replies and events ------------------------------------------------------------------------


def encode_reply(request_id: Any, result: Any, frames: Optional[Frames] = None,
                 bulk: Optional[Dict[str, Any]] = None) -> Frames:
    """The frames of a successful reply: ``result`` (JSON), value ``frames``, and the
    ``bulk`` descriptor of the frames that travel outside the message (they are then
    empty placeholders here)."""
    header: Dict[str, Any] = {"id": request_id, "ok": True, "result": result}
    if bulk is not None:
        header["bulk"] = bulk
    return _message(header, frames)


def encode_error(request_id: Any, kind: str, message: str, tb: str = "",
                 data: Optional[Dict[str, Any]] = None) -> Frames:
    """The frames of an error reply; ``data`` adds JSON fields to the error object (e.g. ``names``)."""
    error = dict(data or {})
    error.update(type=kind, message=message, traceback=tb)
    return _message({"id": request_id, "ok": False, "error": error}, None)


def event_header(event: str, body: Dict[str, Any]) -> Dict[str, Any]:
    """The header of an event pushed to subscribed clients (``paused``, ``lane``, ``resumed``)."""
    return dict(body, event=event, time=time.time())


def event_message(event: str, body: Dict[str, Any]) -> Frames:
    """The frames of an event pushed to subscribed clients (``paused``, ``lane``, ``resumed``)."""
    return _message(event_header(event, body), None)


def event_message_of(header: Dict[str, Any]) -> Frames:
    """The frames of an event whose header :func:`event_header` made (left as it was)."""
    return _message(dict(header), None)


#: The event that carries several events in one message, in order (docs/protocol.md).
EVENTS_BATCH = "events"


def events_message(headers: List[Dict[str, Any]]) -> Frames:
    """One message carrying several events' headers, in order (``events``: what a
    stepping thread's events become when the server thread publishes them together)."""
    return _message({"event": EVENTS_BATCH, "time": time.time(), "events": headers}, None)


class ReplySink(Protocol):
    """Where a request's reply leaves by, on the thread that ran the op.

    Implemented by the server path (a paused thread's inproc PUSH to the server thread,
    which forwards it on the server socket: bridge/push_sink.py ``PushSink``) and by a
    pause's lane (bridge/lane.py). Another transport is one more implementation.
    """

    def send(self, identity: bytes, frames: Frames) -> None:
        """Send ``frames`` (a whole reply) to the client ``identity``; never raises for a gone client."""

    def close(self) -> None:
        """Let the last replies out and release the sink (its owner is done with it)."""


def recv_parts(sock: zmq.Socket, flags: int, small: int) -> List[Any]:
    """One multipart message: its first ``small`` parts as bytes (identity, header: small,
    and a copy is cheaper than a zmq.Frame), the rest as zmq.Frames (values, not copied)."""
    parts = [sock.recv(flags)]
    while sock.get(zmq.RCVMORE):
        parts.append(sock.recv(flags) if len(parts) < small else sock.recv(flags, copy=False))
    return parts


# --- endpoints -----------------------------------------------------------------------------


def endpoint_host(endpoint: str) -> str:
    """The host of a ``tcp://host:port`` endpoint, without IPv6 brackets."""
    return endpoint.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


def tcp_endpoint(host: str, port: Optional[int] = None) -> str:
    """``tcp://host:port`` (or ``tcp://host`` without a port), bracketing an IPv6 host."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}" if port is None else f"tcp://{host}:{port}"


# --- breakpoints ---------------------------------------------------------------------------


@dataclass
class Breakpoint:
    """A breakpoint in the target. ``line`` is where it is; ``requested_line`` what was asked
    (they differ when the asked line held no code). ``hits`` counts stops so far (on the
    client: as of the last fetch)."""

    id: int
    file: str
    line: int
    requested_line: int
    condition: Optional[str] = None
    temporary: bool = False
    hits: int = 0
    enabled: bool = True

    def to_json(self) -> Dict[str, Any]:
        """The JSON object a ``break_at`` or ``breakpoints`` reply carries."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Breakpoint":
        """A Breakpoint from its JSON object (unknown fields ignored)."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def __str__(self) -> str:
        text = f"breakpoint {self.id} at {self.file}:{self.line}"
        if self.line != self.requested_line:
            text += f" (asked for line {self.requested_line}, which has no code)"
        if self.condition:
            text += f" if {self.condition}"
        if self.temporary:
            text += " [temporary]"
        return text + f", hit {self.hits} time{'s' if self.hits != 1 else ''}"
