"""Output interception in the target (bridge/capture.py), end to end.

A request's captured output (``exec``, ``eval``) must never touch what the job's other
threads print, never lose it and never crash the job; the output tail (the panel's job
output view) must keep the job's last lines, bounded, without writing anything to disk.
"""

from __future__ import annotations

import re


PRINTER_JOB = """
import bridge, threading, sys

stop = threading.Event()
count = [0]

def printer():
    i = 0
    while not stop.is_set():
        print(f"line {i}")                 # print: several writes per line
        sys.stderr.write(f"err {i}\\n")    # the other stream, one write
        i += 1
        if i % 50 == 0:
            stop.wait(0.001)
    count[0] = i

th = threading.Thread(target=printer, name="printer")
th.start()
for k in range(CYCLES):
    x = k
    bridge.set_trace()
stop.set()
th.join()
print(f"printer wrote {count[0]}")
"""
CYCLES = 40


def test_printing_thread_survives_pause_eval_exec_cycles(target, attach_to):
    """Another thread prints steadily while the client runs eval/exec in 40 pauses: each of
    its lines reaches the job's real output exactly once, captures hold only their own
    text, and the job exits 0."""
    t = target(PRINTER_JOB.replace("CYCLES", str(CYCLES)))
    s = attach_to(t)
    for k in range(CYCLES):
        s.wait(20)
        assert s.eval("x") == k
        assert s.exec("print('exec', x); print('to err', file=__import__('sys').stderr)") == f"exec {k}\nto err\n"
        assert s.eval("print('in eval') or x * 2", stdout=(buf := __import__("io").StringIO())) == 2 * k
        assert buf.getvalue() == "in eval\n"
        s.cont()
    assert t.wait_exit(60) == 0, t.output()[-2000:]
    out = t.output()
    assert "Traceback" not in out and "RecursionError" not in out, out[-3000:]
    total = int(re.search(r"^printer wrote (\d+)$", out, re.M).group(1))
    assert total > 0
    lines = re.findall(r"^line (\d+)$", out, re.M)
    errs = re.findall(r"^err (\d+)$", out, re.M)
    assert [int(n) for n in lines] == list(range(total)), "stdout lines lost, doubled or mixed"
    assert sorted(int(n) for n in errs) == list(range(total)), "stderr lines lost or doubled"
    assert "exec " not in out and "in eval" not in out and "to err" not in out  # captured, not leaked


def test_capture_works_when_the_job_redirected_stdout_itself(target, attach_to):
    """The job's own redirect_stdout is active during the pause: exec output is still the
    request's alone, the job's buffer gets none of it, and the routers do not pile up."""
    t = target("""
        import bridge, contextlib, io
        mine = io.StringIO()
        def f():
            print("job line")
            bridge.set_trace()
        with contextlib.redirect_stdout(mine):
            f()
        print("job captured:", repr(mine.getvalue()))
        print("back to the real stdout")
    """)
    s = attach_to(t)
    for _ in range(5):
        assert s.exec("print('from exec')") == "from exec\n"
    routers = "len(__import__('bridge.capture').capture._routers)"
    assert s.eval(routers) <= 3  # stdout, stderr, and the one that wraps the job's StringIO
    s.cont()
    assert t.wait_exit(20) == 0
    out = t.output()
    assert "job captured: 'job line\\n'" in out and "back to the real stdout" in out, out
    assert "from exec" not in out


TAIL_JOB = """
import bridge, sys
bridge.listen()
for i in range(20000):
    print(f"line {i} " + "x" * 40)
print("y" * 5000)  # one long write: kept cut
print("to stderr", file=sys.stderr)
bridge.set_trace()
print("after")
"""


def test_output_tail_keeps_the_last_lines_within_its_bound(target, attach_to):
    from bridge.capture import TAIL_CHUNK_CHARS, TAIL_CHUNKS
    from client import proxy

    t = target(TAIL_JOB)
    s = attach_to(t)
    result, frames = s.request("output", {"since": 0})
    chunks = proxy.load(s.refs, frames)
    text = "".join(c[2] for c in chunks)
    assert result["dropped"] and result["recording"]
    assert len(chunks) == TAIL_CHUNKS
    assert chunks[-1][1:] == (2, "\n") and chunks[-2][1:] == (2, "to stderr")  # print writes text, then end
    assert "line 19999 " in text and "line 0 " not in text and "y" * 1024 + " [...]" in text
    assert [c[0] for c in chunks] == sorted(c[0] for c in chunks)
    # Only what came after `since`; a request's own output is never in the tail.
    assert s.exec("print('hidden from the tail')") == "hidden from the tail\n"
    again, frames = s.request("output", {"since": result["last"]})
    assert again["last"] == result["last"] and proxy.load(s.refs, frames) == [] and not again["dropped"]
    small, frames = s.request("output", {"since": 0, "max_chars": 100})
    # About max_chars: the newest chunks until they reach it (the last one may pass it).
    assert sum(len(c[2]) for c in proxy.load(s.refs, frames)) <= 100 + TAIL_CHUNK_CHARS + 6 and small["dropped"]
    s.cont()
    assert t.wait_exit(20) == 0


def test_tail_reads_by_position_so_a_late_writer_is_not_skipped():
    """Writers take a number, then append: two threads can append out of number order.
    A reader that asks "after chunk N" gets every chunk positioned after N."""
    from bridge.capture import OutputTail

    tail = OutputTail(chunks=4)
    assert tail.since(0, 100) == ([], 0, False)
    for text in ("a", "b"):
        tail.record(1, text)
    chunks, last, dropped = tail.since(0, 100)
    assert [c[2] for c in chunks] == ["a", "b"] and last == 2 and not dropped
    assert tail.since(last, 100) == ([], 2, False)
    late, early = tail.next_seq(), tail.next_seq()  # 3 is taken first but appended last
    tail._chunks.append((early, 2, "early"))
    chunks, last, _ = tail.since(2, 100)
    assert [c[2] for c in chunks] == ["early"] and last == early
    tail._chunks.append((late, 2, "late"))
    chunks, last, _ = tail.since(last, 100)
    assert [c[2] for c in chunks] == ["late"] and last == late
    for text in ("c", "d", "e"):
        tail.record(1, text)  # chunk `late` falls out of the 4 kept
    chunks, last, dropped = tail.since(2, 100)
    assert [c[2] for c in chunks] == ["late", "c", "d", "e"] and dropped
    chunks, _, dropped = tail.since(0, 2)
    assert [c[2] for c in chunks] == ["d", "e"] and dropped
