"""Frame op ``source``: a paused frame's source text, read where the code runs.

The source comes from ``linecache`` in the target, so it is there even when the file
does not exist on the notebook's host (another machine, a container, a zip import). A
client caches it by ``version`` and names the version it has: the reply then carries no
text, so stepping through a file sends it once.

* ``source`` {frame, known?: str} -> {file, path, line, function, version, first, total,
  available} and, as its value, the text (only when ``known`` differs from ``version``).
  ``path`` is the name breakpoints use (realpath), ``first`` the line number of the
  text's first line (1 unless the file is too big to send whole), ``total`` the file's
  number of lines, ``available`` False when linecache has nothing (code from ``exec``).
"""

from __future__ import annotations

import linecache
import os
import zlib
from typing import Any, Dict, List, Sequence, Tuple

from . import wire
from .frames import frame_label
from .ops import Reply, arg, frame_op

#: A file with more characters than this is sent as a window of lines around the current line.
MAX_CHARS = 2 * 1024 * 1024
#: Lines on each side of the current line in such a window.
WINDOW_LINES = 2000


def breakpoint_path(filename: str) -> str:
    """The name the tracing engine matches breakpoints by: realpath (pseudo files as they are)."""
    return filename if filename.startswith("<") else os.path.realpath(filename)


def source_lines(filename: str, module_globals: Dict[str, Any]) -> Tuple[List[str], str]:
    """The file's lines as linecache has them now, and a version string for caching."""
    before = linecache.cache.get(filename)
    linecache.checkcache(filename)  # as pdb does: a file edited on disk is read again
    lines = linecache.getlines(filename, module_globals)
    entry = linecache.cache.get(filename)
    if not lines and before is not None and len(before) > 2 and before[2]:
        # The file is gone from disk (deleted, an unmounted volume): the lines read
        # before are still the code that runs.
        entry, lines = before, list(before[2])
    mtime = entry[1] if entry else None
    if mtime:  # a real file: its size and mtime say whether it changed
        return lines, f"m{entry[0]}:{mtime}"
    # Lazily loaded (a zip import) or registered source (IPython cells): its contents say.
    return lines, f"c{len(lines)}:{zlib.crc32(''.join(lines).encode('utf-8', 'surrogatepass')):08x}"


@frame_op("source")
def _op_source(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    label = frame_label(frame)
    filename = label["file"]
    lines, version = source_lines(filename, frame.f_globals)
    first, total = 1, len(lines)
    if sum(map(len, lines)) > MAX_CHARS:
        first = max(1, label["line"] - WINDOW_LINES)
        lines = lines[first - 1: label["line"] + WINDOW_LINES]
        version += f"@{first}+{len(lines)}"
    result = dict(label, path=breakpoint_path(filename), version=version, first=first,
                  total=total, available=bool(lines))
    if arg(args, "known", str, "") == version:
        return Reply(result=result, frames=[])
    return Reply(result=result, frames=wire.dump_value("".join(lines)))
