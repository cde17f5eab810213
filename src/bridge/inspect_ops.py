"""Frame op ``inspect``: a bounded preview of one value of a paused frame (the DebugPanel's
variable inspector).

* ``inspect`` {frame, expr, cap?: int bytes} -> meta (previews.py: kind, type, shape,
  dtypes, statistics, what was cut, ``live``) and, as its value, the sample: pickled
  like any value (the bulk path carries a big one), within ``cap`` bytes. ``expr`` is a
  variable name or an expression evaluated in the frame. A sample that does not fit is
  cut further (fewer rows) or left out (``meta.sample`` says which).

The full value ("load all") is an ordinary ``eval``.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

from . import frames as frame_access
from . import refs
from .ops import OpError, Reply, arg, frame_op
from .previews import Limits, preview

#: The sample's size cap by default (bytes, pickled).
DEFAULT_CAP = 1024 * 1024
#: Times a sample is cut in half before it is left out.
_SHRINKS = 4


@frame_op("inspect")
def _op_inspect(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    expr = arg(args, "expr", str)
    cap = max(1024, arg(args, "cap", int, DEFAULT_CAP))
    try:
        code = compile(expr, "<inspect>", "eval")
    except SyntaxError as exc:
        raise OpError("BadRequest", f"cannot inspect {expr!r}: {exc.msg}") from None
    # Errors of the user's expression propagate: an error reply with the target's traceback.
    value = frame_access.run_code(frame, code, eval_mode=True, overlay=frame_access.needs_overlay(code))
    limits = Limits()
    for _ in range(_SHRINKS + 1):
        meta, sample = preview(value, limits, is_live=refs.must_be_live)
        if sample is None:
            meta["sample"] = "none"
            return Reply(result=meta, frames=[])
        try:
            enc = refs.encode(sample, size_limit=cap, force_copy=True)
        except Exception as exc:  # a sample that cannot be pickled: the meta still tells a lot
            meta["sample"] = f"left out ({type(exc).__name__})"
            return Reply(result=meta, frames=[])
        if sum(memoryview(f).nbytes for f in enc.frames) <= cap:
            meta["sample"] = "sent"
            return Reply(result=meta, frames=enc.frames)
        limits = Limits(rows=max(1, limits.rows // 2), cols=max(1, limits.cols // 2),
                        items=max(1, limits.items // 2), nodes=max(1, limits.nodes // 2),
                        points=max(2, limits.points // 2), side=max(1, limits.side // 2),
                        text=max(1, limits.text // 2), thumbnail=max(16, limits.thumbnail // 2))
    meta["sample"] = f"left out (over {cap} bytes)"
    return Reply(result=meta, frames=[])
