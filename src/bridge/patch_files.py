"""Where the source of a patch lives while the process runs: a file of its own.

The new code's ``co_filename`` is a real file in a private directory of the runtime dir
(``patches-<pid>/``, 0700, files 0600, docs/security.md), holding the patch's source
exactly as compiled. So everything that reads source by file and line works on patched
code as on any other: tracebacks, ``inspect.getsource``, the DebugPanel's source view,
stepping, and breakpoints (the tracing engine wants a file it can compile).

The directory is removed when the process that made it exits; one left by a process
that died is removed by the next process that makes its own.
"""

from __future__ import annotations

import atexit
import linecache
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from .private_files import ensure_private_dir, write_private_file

__all__ = ["patch_file"]

_PREFIX = "patches-"
_made: Optional[Path] = None
_made_by: int = 0


def _directory() -> Path:
    global _made, _made_by
    if _made is not None and _made_by == os.getpid():
        return _made
    from .keys import process_alive, runtime_dir

    base = runtime_dir()
    for old in base.glob(_PREFIX + "*"):
        pid = old.name[len(_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = ensure_private_dir(base / f"{_PREFIX}{os.getpid()}")
    _made, _made_by = Path(os.path.realpath(path)), os.getpid()
    atexit.register(_remove, _made, _made_by)
    return _made


def _remove(path: Path, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that runs atexit handlers
        shutil.rmtree(path, ignore_errors=True)


def patch_file(number: int, module: str, name: str, text: str) -> str:
    """Write the source ``text`` of patch ``number`` and return its path (a realpath),
    already in ``linecache``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{module}-{name}")[:80]
    path = _directory() / f"{number:03d}-{safe}.py"
    write_private_file(path, text.encode("utf-8"))
    filename = str(path)
    stat = os.stat(filename)
    linecache.cache[filename] = (stat.st_size, stat.st_mtime, text.splitlines(keepends=True), filename)
    return filename
