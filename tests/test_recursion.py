"""``set_trace()`` deep in a recursion never raises into the job.

Before, on 3.11 a first ``set_trace()`` 80 frames below the recursion limit raised
RecursionError inside framebridge's lazy imports and left a half-imported ``zmq`` behind
(every later ``set_trace()`` raised AttributeError), and on every version a pause within
about 10 frames of the limit raised RecursionError into the job. Now each pause makes
room below the limit for framebridge's own frames (bridge/stack_room.py); where not even
that fits, one line says so.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, List, Optional

import pytest

import client
from conftest import wait_until

# ``down`` finds the deepest frame the limit allows: down(deepest) could call nothing.
# at(0, deepest - 1 - k) calls set_trace from a frame k frames above the one that can
# still make exactly one call, so k = 0 is set_trace as the last frame the limit allows.
DEPTHS = """
import sys
import bridge

def down(n):
    try:
        return down(n + 1)
    except RecursionError:
        return n

def at(n, target):
    if n < target:
        return at(n + 1, target)
    {at_the_bottom}
"""

JOB = DEPTHS.format(at_the_bottom="bridge.set_trace()\n    return n") + """
deepest = down(0)
limit = sys.getrecursionlimit()
for k in [int(a) for a in sys.argv[1:]]:
    print("try", k, flush=True)
    try:
        at(0, deepest - 1 - k)
        print("returned", k, sys.getrecursionlimit(), flush=True)
    except BaseException as exc:
        print("RAISED", k, type(exc).__name__, exc, flush=True)
shallow = "shallow"
bridge.set_trace()  # the process can still be debugged
print("end", flush=True)
"""

NO_ROOM = "bridge: cannot pause here: no room left below the recursion limit"
#: Up to 3.11 every C call counts against the limit too: the last frames are shorter.
ALWAYS_PAUSES_FROM = 3 if sys.version_info < (3, 12) else 1


def _run(target: Any, ks: List[int]) -> None:
    t = target(JOB, *map(str, ks))
    session: Optional[client.Session] = None
    paused: Dict[int, bool] = {}
    try:
        for k in ks:
            def settled() -> bool:
                nonlocal session
                if f"returned {k} " in t.output():
                    return True
                if session is None and t.connection_file().exists():
                    try:
                        if json.loads(t.connection_file().read_text()).get("paused"):
                            session = client.attach(t.pid)
                    except ValueError:
                        pass  # replaced under us: read again
                return session is not None and bool(session.pauses())

            wait_until(settled, 60, f"set_trace {k} frames above the limit to pause or return")
            if f"returned {k} " in t.output():
                paused[k] = False
                continue
            assert session is not None
            pause = session.wait(20)
            paused[k] = True
            stack = session.stack()
            depth = session.eval("target")
            assert stack[0].function == "at" and len(stack) == depth + 2  # at(0..target), <module>
            assert session.eval("n") == depth  # the deep frame itself
            assert session.locals()["n"].type == "int"
            session.exec("marker = n")
            session.cont()
            t.wait_output(f"returned {k} ", 30)
            assert pause.thread
        if session is None:
            t.wait_attachable(30)
            session = client.attach(t.pid)
        session.wait(20)
        assert session.eval("shallow") == "shallow"  # nothing half-imported
        session.cont()
        out = t.wait_output("end", 30)
    finally:
        if session is not None:
            session.close()
    assert "RAISED" not in out and t.wait_exit(20) == 0, out
    for k in ks:
        # The job's own limit is back after every pause, deep or not.
        line = next(line for line in out.splitlines() if line.startswith(f"returned {k} "))
        assert line == f"returned {k} 1000", out
        if k >= ALWAYS_PAUSES_FROM:
            assert paused[k], f"no pause {k} frames above the limit:\n{out}"
    unpaused = [k for k in ks if not paused[k]]
    # Each pause that could not happen was said: at once, or (no room even for a print,
    # up to 3.11) at the next pause.
    said = out.count(NO_ROOM) + sum(int(word) for line in out.splitlines()
                                    if "could not pause: no room left" in line
                                    for word in line.split()[1:2])
    assert said == len(unpaused), out


@pytest.mark.parametrize("ks", [[80, 200, 10, 3, 2, 1, 0], [0, 1, 2, 80, 0]],
                         ids=["deep-first-import", "at-the-limit-first"])
def test_set_trace_near_the_recursion_limit(target: Any, ks: List[int]) -> None:
    _run(target, ks)


BREAK_JOB = DEPTHS.format(at_the_bottom="here = n  # @break\n    return here") + """
deepest = down(0)
bridge.set_trace()  # the client sets the breakpoint here
for k in (20, 8):
    at(0, deepest - 1 - k)
    print("returned", k, sys.getrecursionlimit(), flush=True)
bridge.set_trace()
print("end", flush=True)
"""


def test_breakpoint_deep_in_a_recursion(target: Any, attach_to: Any) -> None:
    from conftest import line_of

    t = target(BREAK_JOB)
    s = attach_to(t)
    s.break_at(str(t.script), line_of(BREAK_JOB, "break"))
    for k in (20, 8):
        s.cont()
        pause = s.wait(30)
        assert pause.reason == "breakpoint"
        assert s.stack()[0].function == "at" and s.eval("n == target")
        assert s.eval("n") == s.eval("deepest") - 1 - k
    s.clear(all=True)
    s.cont()
    s.wait(30)
    s.cont()
    out = t.wait_output("end", 30)
    assert "returned 20 1000" in out and "returned 8 1000" in out and "Traceback" not in out, out
