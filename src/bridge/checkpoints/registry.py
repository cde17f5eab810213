"""The job's shared record of its checkpoints: one JSON document in a memfd.

Every process of a job (the keepers, the live process, a rewound live process) holds the
same memfd, inherited through ``fork``; a keeper that is dropped passes it through
``exec`` to its relay. So all of them read and write one record, whatever memory each
one's copy-on-write image holds: a live process forked from an old snapshot still learns
that an ancestor's checkpoint was dropped since, and the root keeper learns which pid
is live now (it forwards signals there).

The document::

    {"job": <pid the supervisor started>, "live": <pid or null while a rewind runs>,
     "generation": <bumped at each take and rewind>, "next_id": <int>,
     "checkpoints": [{"id", "keeper", "depth", "label", "taken", "rewinds", "state",
                      "threads", "inventory"}, ...]}   # outermost first

Writers take a POSIX record lock (``lockf``): those are per process, which is what is
needed here (``flock`` locks belong to the open file description, which all of these
processes share, so they would not exclude each other).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Any, Callable, Dict, Iterator, List, Optional

Doc = Dict[str, Any]

#: A record bigger than this is refused (the inventories are capped well below it).
MAX_BYTES = 8 << 20


class Registry:
    """Handle on the shared record; ``fd`` is the memfd (close-on-exec except in a relay)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def create(cls, job: int) -> "Registry":
        """A new record for a job whose supervisor-visible pid is ``job``."""
        fd = os.memfd_create("framebridge-checkpoints", os.MFD_CLOEXEC)
        registry = cls(fd)
        with registry._locked(fcntl.LOCK_EX):
            registry._write({"job": job, "live": job, "generation": 0, "next_id": 1, "checkpoints": []})
        return registry

    def read(self) -> Doc:
        """The current record."""
        with self._locked(fcntl.LOCK_SH):
            return self._read()

    def update(self, change: Callable[[Doc], Any]) -> Any:
        """Apply ``change`` to the record under the lock and store it; return what ``change`` returned."""
        with self._locked(fcntl.LOCK_EX):
            doc = self._read()
            result = change(doc)
            self._write(doc)
            return result

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

    @contextlib.contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        fcntl.lockf(self.fd, kind)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _read(self) -> Doc:
        size = os.fstat(self.fd).st_size
        data = os.pread(self.fd, size, 0)
        return json.loads(data.decode("utf-8"))

    def _write(self, doc: Doc) -> None:
        data = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        if len(data) > MAX_BYTES:
            raise ValueError(f"the checkpoint record would be {len(data)} bytes (limit {MAX_BYTES})")
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(self.fd, view[offset:], offset)
        os.ftruncate(self.fd, len(data))


# --- helpers on the document --------------------------------------------------------------


def entry(doc: Doc, checkpoint_id: int) -> Optional[Dict[str, Any]]:
    """The checkpoint ``checkpoint_id`` of the record, None if it is not (or no longer) there."""
    for item in doc["checkpoints"]:
        if item["id"] == checkpoint_id:
            return item
    return None


def lineage(doc: Doc) -> List[int]:
    """Keeper pids from the job's pid inwards, then the live pid (when one runs)."""
    pids = [item["keeper"] for item in doc["checkpoints"]]
    if doc.get("live") is not None:
        pids.append(doc["live"])
    return pids
