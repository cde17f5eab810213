"""Frame access on the running Python: reads and writes that must hold on 3.9 to 3.14.

These run in-process, on the frame's own thread, exactly as the pause loop calls them.
"""

from __future__ import annotations

import sys

import pytest

from bridge import frames

CAN_DELETE = sys.version_info < (3, 12)


def test_read_locals_is_a_fresh_copy():
    a = 1
    b = [2]
    frame = sys._getframe()
    snap = frames.read_locals(frame)
    assert snap["a"] == 1 and snap["b"] is b
    snap["a"] = 99
    assert a == 1


def test_write_rebinds_locals_seen_by_running_code():
    x = 1
    y = "old"
    frames.write_locals(sys._getframe(), {"x": 42, "y": "new"})
    assert x == 42
    assert y == "new"


def test_write_to_caller_frame():
    def inner():
        frames.write_locals(sys._getframe(1), {"value": 7})

    value = 0
    inner()
    assert value == 7


def test_cell_variable_written_is_seen_by_closure():
    counter = 1

    def read():
        return counter

    frames.write_locals(sys._getframe(), {"counter": 5})
    assert counter == 5
    assert read() == 5


def test_free_variable_written_from_inner_changes_outer():
    shared = "a"

    def inner():
        nonlocal shared
        frames.write_locals(sys._getframe(), {"shared": "b"})
        return shared

    assert inner() == "b"
    assert shared == "b"


def test_write_is_all_or_nothing_on_bad_name():
    x = 1
    with pytest.raises(frames.FrameWriteError, match="not a valid variable name"):
        frames.write_locals(sys._getframe(), {"x": 2, "not valid": 3})
    assert x == 1


def test_delete_missing_name_changes_nothing():
    x = 1
    with pytest.raises(frames.FrameWriteError):
        frames.write_locals(sys._getframe(), {"x": 2}, deletes=["never_defined"])
    assert x == 1


@pytest.mark.skipif(not CAN_DELETE, reason="3.12+ cannot unbind a function's fast local")
def test_delete_local_unbinds_it():
    doomed = 1
    frames.write_locals(sys._getframe(), {}, deletes=["doomed"])
    with pytest.raises(UnboundLocalError):
        doomed  # noqa: B018


@pytest.mark.skipif(CAN_DELETE, reason="3.11 and older can delete fast locals")
def test_delete_local_refused_clearly_on_312_and_later():
    doomed = 1
    keep = 1
    with pytest.raises(frames.FrameWriteError, match="cannot delete the local"):
        frames.write_locals(sys._getframe(), {"keep": 2}, deletes=["doomed"])
    assert doomed == 1 and keep == 1  # nothing applied


def test_module_frame_writes_globals():
    ns: dict = {"__name__": "fake_module"}
    code = compile(
        "import sys\nframe = sys._getframe()\nfrom bridge import frames as F\n"
        "F.write_locals(frame, {'g': 10})\nafter = g\n"
        "F.write_locals(frame, {}, deletes=['after'])\n",
        "<mod>",
        "exec",
    )
    exec(code, ns)
    assert ns["g"] == 10
    assert "after" not in ns


def test_run_code_eval_sees_locals_in_comprehension():
    threshold = 2
    rows = [1, 2, 3, 4]
    code = compile("[r for r in rows if r > threshold]", "<t>", "eval")
    assert frames.run_code(sys._getframe(), code, eval_mode=True) == [3, 4]


def test_run_code_exec_assignment_changes_frame():
    total = 0
    code = compile("total = total + 5\nextra_name = 1", "<t>", "exec")
    frames.run_code(sys._getframe(), code, eval_mode=False)
    assert total == 5


def test_run_code_global_statement_writes_real_globals():
    code = compile("global _fb_test_global\n_fb_test_global = 'set'", "<t>", "exec")
    try:
        frames.run_code(sys._getframe(), code, eval_mode=False)
        assert globals()["_fb_test_global"] == "set"
    finally:
        globals().pop("_fb_test_global", None)


@pytest.mark.skipif(not CAN_DELETE, reason="3.12+ cannot unbind a function's fast local")
def test_run_code_deleting_a_local_does_not_leak_it_into_globals():
    doomed = object()
    frames.run_code(sys._getframe(), compile("del doomed", "<t>", "exec"), eval_mode=False)
    assert "doomed" not in globals()
    with pytest.raises(UnboundLocalError):
        doomed  # noqa: B018


@pytest.mark.skipif(sys.version_info[:2] != (3, 12), reason="only 3.12 turns a deleted fast local into None (3.13+ refuses, 3.11- unbinds)")
def test_run_code_delete_on_312_keeps_the_value_and_says_so(capsys):
    doomed = "kept"
    frames.run_code(sys._getframe(), compile("del doomed", "<t>", "exec"), eval_mode=False)
    assert doomed == "kept"
    assert "cannot delete the local variable 'doomed'" in capsys.readouterr().err


def test_run_code_lambda_sees_locals():
    factor = 3
    code = compile("list(map(lambda v: v * factor, [1, 2]))", "<t>", "eval")
    assert frames.run_code(sys._getframe(), code, eval_mode=True) == [3, 6]


def test_frame_label():
    label = frames.frame_label(sys._getframe())
    assert label["function"].endswith("test_frame_label")
    assert label["file"] == __file__


# --- the same, through a real pause (tests/harness.py): the ops the client sends ----------------


def test_set_through_a_pause_rebinds_a_cell_the_closure_sees(inproc):
    import bridge

    def job():
        counter = 1

        def read():
            return counter

        bridge.set_trace()
        return counter, read()

    worker = inproc.run_paused(job)
    s = inproc.attach()
    s.set(counter=5)
    assert s.eval("counter") == 5
    s.cont()
    assert worker.join() == (5, 5)


def test_delete_through_a_pause_unbinds_or_refuses_as_this_python_can(inproc):
    import bridge
    import client

    def job():
        doomed = 1
        keep = 1
        bridge.set_trace()
        return keep, "doomed" in locals()

    worker = inproc.run_paused(job)
    s = inproc.attach()
    if CAN_DELETE:
        s.delete("doomed")
        assert "doomed" not in s.locals()
    else:
        with pytest.raises(client.RemoteError, match="cannot delete the local") as refused:
            s.frame_request("set", {"delete": ["doomed"]}, value={"keep": 2})
        assert refused.value.remote_type == "FrameWriteError"
        assert s.eval("(doomed, keep)") == (1, 1)  # all or nothing: keep was not written either
    s.cont()
    assert worker.join() == (1, not CAN_DELETE)
