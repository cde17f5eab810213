"""Finding a job's live process by its connection files, across checkpoints and rewinds.

A job with checkpoints runs in a new process after each checkpoint and each rewind
(docs/howto-rewind.md); the pid its supervisor started (the *job id*) stays, but keeps a
snapshot and serves no one. Each live process writes a connection file of its own that
carries ``"job"`` (the job id), ``"lineage"`` and ``"generation"`` (one more at every
checkpoint and rewind). So a client finds the job's process now as the file with that
job id and the highest generation, and the process that a checkpoint or a rewind is
starting as the first file of the job with a generation above the one it knew.

Nothing notifies a new file; :class:`Successor` looks at the runtime directory every
few milliseconds (reading only files it has not seen in that state), against a deadline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from bridge import keys

#: How often a wait for the job's next process looks at the runtime directory.
POLL_S = 0.003


def job_of(info: Dict[str, Any]) -> int:
    """The job id a connection file names (its own pid for a job without checkpoints)."""
    return int(info.get("job") or info["pid"])


def generation_of(info: Dict[str, Any]) -> int:
    """The generation a connection file names (0 for a job without checkpoints)."""
    return int(info.get("generation") or 0)


def newest_of_job(job: int) -> Optional[Dict[str, Any]]:
    """The connection info of ``job``'s live process now (its highest generation), or
    None when no process of that job is attachable."""
    best: Optional[Dict[str, Any]] = None
    for info in _infos():
        if job_of(info) == job and (best is None or generation_of(info) > generation_of(best)):
            best = info
    return best


class Successor:
    """The next live process of ``job``: the first connection file with that job id and
    a generation above ``after`` whose process lives. Make it before the request that
    starts the new process: files that are there now are not read again unless they change."""

    def __init__(self, job: int, after: int) -> None:
        self.job = job
        self.after = after
        self._seen: Dict[Path, Tuple[int, int]] = {path: stamp for path, stamp in _stamps()}

    def look(self) -> Optional[Dict[str, Any]]:
        """The successor's connection info if its file is there now, else None."""
        for path, stamp in _stamps():
            if self._seen.get(path) == stamp:
                continue
            self._seen[path] = stamp
            info = _read(path)
            if (info is not None and job_of(info) == self.job and generation_of(info) > self.after
                    and keys.process_alive(int(info["pid"]))):
                return info
        return None

    def wait(self, deadline: float, failed: Callable[[], None] = lambda: None) -> Optional[Dict[str, Any]]:
        """:meth:`look` until it finds the file or ``deadline`` (time.monotonic) passes
        (None). ``failed()`` is called between looks: it raises to end the wait early
        (the request that was to start the process was refused)."""
        while True:
            found = self.look()
            if found is not None:
                return found
            failed()
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)  # a connection file appearing has nothing to wait on


def _stamps() -> Iterator[Tuple[Path, Tuple[int, int]]]:
    for path in keys.iter_connection_files():
        try:
            st = os.stat(path)
        except OSError:
            continue  # replaced or removed meanwhile
        yield path, (st.st_mtime_ns, st.st_size)


def _read(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return keys.read_connection_file(path)
    except (OSError, ValueError):
        return None  # half-written (written whole, but it may be replaced under us), or not ours


def _infos() -> Iterator[Dict[str, Any]]:
    for path in keys.iter_connection_files():
        info = _read(path)
        if info is not None and keys.process_alive(int(info["pid"])):
            yield info
