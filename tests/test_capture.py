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
