"""Where the engine may stop: never in framebridge's own code, nor in what it calls.

Three rules (docs/stepping.md):

* **Own files** (``src/bridge``, ``src/client``) never stop, and breakpoints cannot
  be set in them.
* **Runner files**: ``threading.py`` (a thread's bootstrap) and ``runpy`` (what ran
  ``python -m bridge``) never stop either: they only run the program.
* **Machinery**: a frame called, directly or through other libraries, by our own code
  (pyzmq under the pause loop, ``traceback``/``linecache`` under the post-mortem hook,
  ``posixpath`` under the engine) is not the program: stepping passes through it.
  The one exception is the program itself, which ``python -m bridge`` runs with
  ``exec``: a module body executed by our code is the user's.
"""

from __future__ import annotations

import os
import runpy
import threading
from types import FrameType
from typing import Dict

__all__ = ["OWN_DIRS", "Scope", "canonical", "is_own_file"]

from ..own_code import OWN_DIRS, is_own_file  # noqa: E402  (the one definition of our own code)

_RUNNER_FILES = frozenset({
    os.path.realpath(threading.__file__),
    os.path.realpath(runpy.__file__),
    "<frozen runpy>",
})


def canonical(filename: str) -> str:
    """The name a breakpoint file is matched by: realpath, or the name itself for
    pseudo files such as ``<string>`` (which then never match a real file)."""
    if filename.startswith("<"):
        return filename
    return os.path.realpath(filename)


class Scope:
    """Cached answers to "may the engine stop here?" by ``co_filename``.

    The caches are plain dicts written without a lock: a race only computes the same
    answer twice.
    """

    def __init__(self) -> None:
        self._own: Dict[str, bool] = {}
        self._never: Dict[str, bool] = {}

    def is_own(self, raw_filename: str) -> bool:
        """Whether code from ``raw_filename`` (a ``co_filename``) is framebridge's own."""
        try:
            return self._own[raw_filename]
        except KeyError:
            own = self._own[raw_filename] = is_own_file(raw_filename)
            return own

    def never_stops(self, raw_filename: str) -> bool:
        """Own code or a runner file: no stop, no breakpoint, no stepping there."""
        try:
            return self._never[raw_filename]
        except KeyError:
            path = canonical(raw_filename)
            never = self._never[raw_filename] = is_own_file(raw_filename) or path in _RUNNER_FILES
            return never

    def is_machinery(self, frame: FrameType) -> bool:
        """Whether ``frame`` runs on behalf of our own code (see the module docstring).

        Walks the callers up to the first frame of our own code; cheap enough for the
        moment a step is about to stop, not for every line.
        """
        child = frame
        caller = frame.f_back
        while caller is not None:
            if self.is_own(caller.f_code.co_filename):
                # `python -m bridge` exec's the program's module body: that is the user's
                return child.f_code.co_name != "<module>"
            child = caller
            caller = caller.f_back
        return False

    def may_step_into(self, frame: FrameType) -> bool:
        """Whether a step may stop in ``frame``."""
        return not self.never_stops(frame.f_code.co_filename) and not self.is_machinery(frame)
