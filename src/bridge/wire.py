"""The one message spec shared by the target (`bridge`) and the notebook (`client`).

A message is a list of ZeroMQ frames::

    [header, (pickle, buffer, buffer, ...)?]

``header`` is UTF-8 JSON and is always safe to parse and to reject. Its keys:

``v``      protocol version (``PROTOCOL_VERSION``); a mismatch gets an error reply.
``id``     request id chosen by the client; echoed in the reply.
``op``     operation name (requests) -- or ``event`` (events pushed by the target).
``args``   JSON object of small arguments.
``nbuf``   number of value frames that follow the header (0 when the message has no value).

Values (anything that is not small JSON) travel as pickle protocol 5 with out-of-band
buffers: the pickle stream is one frame and every ``PickleBuffer`` is a frame of its own,
sent without copying (the way jupyter_client's session carries ``buffers``). JSON is for
control, pickle only for values.

Replies carry ``ok`` (bool) and, when ``ok`` is false, ``error``:
``{"type": ..., "message": ..., "traceback": ...}``.

Big buffers (bridge/bulk/): a request's ``args._bulk`` ("shm" or "aes", negotiated per session
with the ``bulk_hello`` server op) asks the target to move value frames of 1 MiB or more
outside this message; the reply's header then has ``bulk``, a descriptor naming where
each went, and those frames are empty placeholders. In the other direction a request's
``args._bulk_in`` is the same kind of descriptor for its own value frames.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

PROTOCOL_VERSION = 1

#: Largest header frame the server parses; anything bigger is refused unread.
MAX_HEADER_BYTES = 64 * 1024

#: Largest whole message a socket accepts (ZMQ_MAXMSGSIZE): bigger values take the bulk path.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

#: Buffers smaller than this are copied by ZeroMQ anyway; no point sending them zero-copy.
ZERO_COPY_THRESHOLD = 64 * 1024

Frames = List[Any]


class ProtocolError(Exception):
    """A message that does not follow the spec. The text names the problem."""


def _json_default(obj: Any) -> Any:
    # Sets and tuples show up in args (names lists); anything else is a bug upstream.
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable in a header")


# One encoder for every header: json.dumps with options builds a new one per call (issue 6).
_header_encoder = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def encode_header(header: Dict[str, Any]) -> bytes:
    """Serialise a header dict to compact JSON bytes."""
    return _header_encoder.encode(header).encode("utf-8")


def decode_header(frame: Any) -> Dict[str, Any]:
    """Parse and validate a header frame; raise ProtocolError naming what is wrong."""
    data = frame if type(frame) is bytes else bytes(frame.buffer) if hasattr(frame, "buffer") else bytes(frame)
    if len(data) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(data)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    try:
        header = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, not {type(header).__name__}")
    version = header.get("v")
    # type() check: JSON true and 1.0 compare equal to 1 in Python but are not version 1.
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})"
        )
    nbuf = header.get("nbuf", 0)
    if not isinstance(nbuf, int) or isinstance(nbuf, bool) or nbuf < 0:
        raise ProtocolError(f"nbuf must be a non-negative integer, not {nbuf!r}")
    args = header.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(f"args must be a JSON object, not {type(args).__name__}")
    return header


def dump_value(value: Any, *, pickler: Optional[Callable[..., Any]] = None) -> Frames:
    """Pickle ``value`` (protocol 5) into [stream, *out-of-band buffers] without copying buffers.

    Raises whatever pickling raises (callers turn that into a clear error or a live reference).
    """
    buffers: List[pickle.PickleBuffer] = []
    if pickler is None:  # the common case: pickle.dumps is several times cheaper than a Pickler
        frames: Frames = [pickle.dumps(value, protocol=5, buffer_callback=buffers.append)]
    else:
        stream = io.BytesIO()
        pickler(stream, protocol=5, buffer_callback=buffers.append).dump(value)
        frames = [stream.getvalue()]  # not getbuffer(): an export pins the stream, and GC of a cycle holding it then fails
    for buf in buffers:
        frames.append(buf.raw())
    return frames


def load_value(frames: Sequence[Any]) -> Any:
    """Inverse of :func:`dump_value`; buffers are used in place (zero-copy, writable)."""
    if not frames:
        raise ProtocolError("a value needs at least one frame")
    stream, *buffers = frames
    return pickle.loads(_as_buffer(stream), buffers=[_as_buffer(b) for b in buffers])


def _as_buffer(frame: Any) -> Any:
    # zmq.Frame (copy=False receive) exposes .buffer; bytes/memoryview pass through.
    return frame.buffer if hasattr(frame, "buffer") else frame


def make_message(header: Dict[str, Any], value_frames: Optional[Frames] = None) -> Frames:
    """Build the frames of a message: header (with v and nbuf filled in) then value frames."""
    value_frames = value_frames or []
    header = dict(header, v=PROTOCOL_VERSION, nbuf=len(value_frames))
    return [encode_header(header), *value_frames]


def split_message(frames: Sequence[Any]) -> Tuple[Dict[str, Any], List[Any]]:
    """Parse a received message into (header, value frames), checking the frame count."""
    if not frames:
        raise ProtocolError("empty message")
    header = decode_header(frames[0])
    values = list(frames[1:])
    if len(values) != header.get("nbuf", 0):
        raise ProtocolError(
            f"header announces {header.get('nbuf', 0)} value frames but {len(values)} arrived"
        )
    return header, values


def error_payload(exc: BaseException, traceback_text: str = "") -> Dict[str, str]:
    """The JSON form of an error carried in a reply."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback_text,
    }
