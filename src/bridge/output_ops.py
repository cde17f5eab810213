"""Server op ``output``: the job's last printed lines (the DebugPanel's job output view).

The lines come from the bounded in-memory tail that bridge/capture.py keeps while bridge
is active (nothing is written to disk). A client polls with the ``seq`` of the last
chunk it has; the answer holds only what came after it.

* ``output`` {since?: int, max_chars?: int} -> {last, dropped, recording} and, as its
  value, a list of ``(seq, stream, text)`` chunks (stream 1 = stdout, 2 = stderr).
  ``dropped``: chunks after ``since`` are no longer in the tail (or were left out to
  keep the reply within ``max_chars``).
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

from . import capture, wire
from .ops import Reply, arg, server_op

#: Most characters of output one reply carries (the newest win).
MAX_REPLY_CHARS = 128 * 1024


@server_op("output")
def _op_output(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Reply:
    since = max(0, arg(args, "since", int, 0))
    max_chars = min(max(1, arg(args, "max_chars", int, MAX_REPLY_CHARS)), MAX_REPLY_CHARS)
    chunks, last, dropped = capture.tail.since(since, max_chars)
    return Reply(result={"last": last, "dropped": dropped, "recording": capture.tail.enabled},
                 frames=wire.dump_value(chunks))
