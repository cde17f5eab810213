"""The fork-based playground against real targets: isolation, hazards, other Pythons."""

from __future__ import annotations

from typing import Any

import pytest

from client.errors import RemoteError
from client.playground import run_playground
from conftest import other_python

JOB = """
import bridge
def job():
    data = {"a": [1, [2, 3]], "b": 2}
    bridge.set_trace()
    print("after", data, flush=True)
job()
"""

# Paused while holding logging's module lock (a Logger subclass built under
# Manager.getLogger). logging's at-fork hook takes that lock, so a fork from any other
# thread would hang (FACTS.md); the playground forks from the paused thread itself.
JOB_HOLDING_LOGGING_LOCK = """
import logging, bridge
bridge.listen()  # start the server (and its imports) before the trap is set
class PausingLogger(logging.Logger):
    def __init__(self, name):
        super().__init__(name)
        secret = [1, 2, 3]
        if name == "job":
            bridge.set_trace()
logging.setLoggerClass(PausingLogger)
logging.getLogger("job").warning("made it")
print("after", flush=True)
"""


def test_deep_mutation_stays_in_the_copy(target: Any, attach_to: Any) -> None:
    t = target(JOB)
    s = attach_to(t)
    r = run_playground(s, "data['a'][1].append(9)\ndel data['b']\nprint('copy', data)\ndata")
    assert r.output == "copy {'a': [1, [2, 3, 9]]}\n" and r.value == {"a": [1, [2, 3, 9]]}
    assert r.pid != t.pid and r.fork_ms < 1000
    assert s.eval("data") == {"a": [1, [2, 3]], "b": 2}
    unpicklable = run_playground(s, "import threading\nthreading.Lock()")
    assert "lock" in unpicklable.value_repr and "could not be sent" in unpicklable.note
    with pytest.raises(RemoteError, match="SyntaxError"):
        run_playground(s, "def broken(:")
    s.cont()
    assert "after {'a': [1, [2, 3]], 'b': 2}" in t.wait_output("after")


def test_fork_while_the_paused_thread_holds_the_logging_lock(target: Any, attach_to: Any) -> None:
    t = target(JOB_HOLDING_LOGGING_LOCK)
    s = attach_to(t)
    assert s.eval("logging._lock._is_owned()")  # the paused thread really holds the lock
    r = run_playground(s, "secret.append(4)\nimport logging\nlogging.getLogger('other').name, secret",
                       timeout=10)
    assert r.value == ("other", [1, 2, 3, 4])
    assert s.eval("secret") == [1, 2, 3]
    s.cont()
    t.wait_output("after")


@pytest.mark.parametrize("version", ["3.12", "3.14"])
def test_playground_on_newer_pythons_without_fork_warning(target: Any, attach_to: Any, version: str) -> None:
    # -W error::DeprecationWarning: 3.12+ warns when forking a multi-threaded process; the
    # playground silences that for its own fork only, so even "warnings are errors" passes.
    t = target(JOB, env={"PYTHONWARNINGS": "error::DeprecationWarning"}, python=other_python(version))
    s = attach_to(t)
    r = run_playground(s, "data.clear()\nlen(data)")
    assert r.value == 0
    assert s.eval("data") == {"a": [1, [2, 3]], "b": 2}
    s.cont()
    assert "DeprecationWarning" not in t.wait_output("after")


# Daemons often ignore SIGCHLD (the kernel then reaps children at once) or reap every
# child in a handler of their own: either way the playground's child is gone before
# waitpid can ask for it.
JOB_THAT_REAPS_ITS_CHILDREN = """
import os, signal, sys, bridge
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
else:
    def reap_all(signum, frame):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
    signal.signal(signal.SIGCHLD, reap_all)
def job():
    data = [1, 2, 3]
    bridge.set_trace()
    print("after", data, flush=True)
job()
"""


@pytest.mark.parametrize("how", ["ignore", "handler"])
def test_playground_when_the_target_reaps_its_children(target: Any, attach_to: Any, how: str) -> None:
    t = target(JOB_THAT_REAPS_ITS_CHILDREN, how)
    s = attach_to(t)
    for _ in range(3):  # the handler's main thread runs between the forks: reap races vary
        r = run_playground(s, "data.append(4)\nprint('copy', data)\ndata")
        assert r.value == [1, 2, 3, 4] and r.output == "copy [1, 2, 3, 4]\n" and r.error is None
    with pytest.raises(RemoteError, match="before sending a result"):
        run_playground(s, "import os\nos._exit(3)")
    with pytest.raises(RemoteError, match="did not finish within 1s"):
        run_playground(s, "while True:\n    pass", timeout=1)
    assert s.eval("data") == [1, 2, 3]
    s.cont()
    assert "after [1, 2, 3]" in t.wait_output("after")
