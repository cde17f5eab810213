"""The value codec both sides use: pickle protocol 5 with out-of-band buffers.

A value (anything that is not small JSON) travels as value frames after a message's
header (``protocol.py``): the pickle stream is one frame and every ``PickleBuffer`` is a
frame of its own, sent without copying (the way jupyter_client's session carries
``buffers``). JSON is for control, pickle only for values.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Callable, List, Optional, Sequence

from .protocol import Frames, ProtocolError

__all__ = ["Frames", "ProtocolError", "dump_value", "load_value"]


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
