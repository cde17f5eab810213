"""Which frames are framebridge's own: the one definition both the pause side and the
tracing engine use.

framebridge's own code is every file under the ``bridge`` and ``client`` packages
(subpackages included). Its frames are never shown to the user as theirs: a pause's stack
starts at the user's frame, an error reply's traceback at the user's code.
"""

from __future__ import annotations

import functools
import os
from types import FrameType, TracebackType
from typing import List, Optional, Tuple

_PACKAGES = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
#: Directories of framebridge's packages, each ending with a path separator.
OWN_DIRS: Tuple[str, ...] = tuple(os.path.join(_PACKAGES, name) + os.sep for name in ("bridge", "client"))


@functools.lru_cache(maxsize=4096)
def is_own_file(filename: str) -> bool:
    """Whether ``filename`` (a code object's ``co_filename``) is framebridge's own code."""
    if filename.startswith("<"):  # <string>, <frozen ...>, <remote>: never ours on disk
        return False
    return os.path.realpath(filename).startswith(OWN_DIRS)


def user_frames(frame: Optional[FrameType]) -> List[FrameType]:
    """``frame`` and its callers, innermost first, without framebridge's own frames."""
    out = []
    while frame is not None:
        if not is_own_file(frame.f_code.co_filename):
            out.append(frame)
        frame = frame.f_back
    return out


def traceback_frames(tb: TracebackType) -> List[FrameType]:
    """Frames of a traceback innermost first, then the callers of its outermost frame."""
    chain = []
    while tb is not None:
        chain.append(tb.tb_frame)
        tb = tb.tb_next
    chain.reverse()
    return chain + user_frames(chain[-1].f_back) if chain else []


def user_traceback(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """``tb`` from its first entry in the user's code on (framebridge's own frames are noise to them)."""
    while tb is not None and is_own_file(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb
