"""Post-mortem end to end: post_mortem(), install_excepthook() and ``python -m bridge``.

Real target processes, real sessions: the dead frame is inspected, then the process
exits the way ``python`` would have (traceback text, exit status).
"""

from __future__ import annotations

import os
import textwrap

import pytest
from conftest import line_of

WAIT = 20.0

CRASH = """
    import os, sys
    print("argv", sys.argv[1:], __name__, sys.path[0] == os.path.dirname(os.path.realpath(__file__)), flush=True)

    def fail(x):
        local_value = x * 2
        raise RuntimeError(f"boom {local_value}")  # @raise

    fail(21)
"""



def run_bridge(target, tmp_path, source, *args, runner_args=(), name="prog.py"):
    """Start ``python -m bridge [runner_args] prog.py args`` on ``source``."""
    script = tmp_path / name
    return target(source, *args, name=name, module_args=["-m", "bridge", *runner_args, str(script)])


def test_runner_pauses_post_mortem_then_exits_1_with_pythons_traceback(target, attach_to, tmp_path):
    t = run_bridge(target, tmp_path, CRASH, "a", "--b")
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "post_mortem"
    assert (p.function, p.line) == ("fail", line_of(CRASH, "raise"))
    assert "boom 42" in p.extra["exception"]
    assert s.eval("local_value") == 42  # the dead frame's state
    assert [f.function for f in s.stack()][:2] == ["fail", "<module>"]
    out = t.output()
    assert "argv ['a', '--b'] __main__ True" in out
    assert "Traceback (most recent call last):" in out and "RuntimeError: boom 42" in out
    assert "bridge" + os.sep + "__main__.py" not in out  # the runner's frames are not shown
    s.cont()
    assert t.wait_exit(WAIT) == 1


@pytest.mark.parametrize("code,status", [("pass", 0), ("raise SystemExit(3)", 3), ("import sys; sys.exit('bye')", 1)])
def test_runner_preserves_the_exit_status(target, tmp_path, code, status):
    t = run_bridge(target, tmp_path, code + "\n")
    assert t.wait_exit(WAIT) == status
    if status == 1:
        assert "bye" in t.output()


def test_runner_wait_pauses_before_the_first_line(target, attach_to, tmp_path):
    src = """
        # a comment first
        x = 1  # @first
        y = x + 1  # @second
        print("ran", x, y, flush=True)
    """
    t = run_bridge(target, tmp_path, src, runner_args=["--wait"])
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "start" and (p.function, p.line) == ("<module>", line_of(src, "first"))
    assert "ran" not in t.output()
    s.next()  # retires the pause at once, so wait() returns the next one
    p2 = s.wait(WAIT)
    assert p2.pause_id > p.pause_id
    assert p2.line == line_of(src, "second") and s.eval("x") == 1
    s.cont()
    t.wait_output("ran 1 2")
    assert t.wait_exit(WAIT) == 0


def test_runner_runs_a_module_with_dash_m(target, attach_to, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "job.py").write_text(textwrap.dedent(CRASH))
    t = target("", "x", "y", module_args=["-m", "bridge", "-m", "pkg.job"])
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "post_mortem" and p.function == "fail"
    assert s.eval("__name__") == "__main__" and s.eval("__spec__.name") == "pkg.job"
    assert s.eval("sys.argv") == [str(pkg / "job.py"), "x", "y"]
    s.cont()
    assert t.wait_exit(WAIT) == 1


def test_excepthook_main_thread(target, attach_to):
    src = """
        import bridge
        bridge.install_excepthook()
        secret = "s3"
        raise KeyError(secret)  # @raise
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "post_mortem" and p.line == line_of(src, "raise")
    assert s.eval("secret") == "s3"
    assert "KeyError: 's3'" in t.output()  # printed as python would, before the pause
    s.cont()
    assert t.wait_exit(WAIT) == 1


def test_excepthook_threading_thread(target, attach_to):
    src = """
        import threading, bridge
        bridge.install_excepthook()

        def work(n):
            half = n // 2
            raise ValueError(half)  # @raise

        th = threading.Thread(target=work, args=(10,), name="worker")
        th.start()
        th.join()
        print("main goes on", flush=True)
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "post_mortem" and p.name == "worker" and p.line == line_of(src, "raise")
    assert s.eval("half") == 5
    s.cont()
    t.wait_output("main goes on")
    assert t.wait_exit(WAIT) == 0  # a thread's exception does not change the exit status


def test_post_mortem_of_a_handled_exception(target, attach_to):
    src = """
        import bridge

        def parse(text):
            number = int(text)  # @raise
            return number

        try:
            parse("x1")
        except ValueError:
            bridge.post_mortem()
        print("after", flush=True)
    """
    t = target(src)
    s = attach_to(t)
    p = s.wait()
    assert p.reason == "post_mortem" and (p.function, p.line) == ("parse", line_of(src, "raise"))
    assert s.eval("text") == "x1"
    s.cont()
    t.wait_output("after")
    assert t.wait_exit(WAIT) == 0
