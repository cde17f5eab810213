"""Checkpoints and rewind (bridge.checkpoints) with real processes: keepers, relays, signals.

Each test runs a job script in a process group of its own (the `target` fixture starts a
new session), so every process the job makes -- keepers, the live process, the witness,
relays -- is in the group of the pid the test started; "nothing left behind" is checked by
scanning /proc for that group.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from conftest import SRC, wait_until
from process_groups import assert_nothing_left, group_members, state_of

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checkpoints need Linux")

PY312 = "/opt/pythons/3.12/bin/python3.12"


def values(out: str, key: str) -> List[Any]:
    """Every complete ``KEY <json>`` line of a job's output, decoded."""
    complete = out[: out.rfind("\n") + 1]  # the job may be half-way through writing the last one
    return [json.loads(line[len(key) + 1:]) for line in complete.splitlines() if line.startswith(key + " ")]


@contextlib.contextmanager
def piped_job(tmp_path: Path, source: str, *, own_session: bool = True) -> Iterator[subprocess.Popen]:
    """A job whose stdin and stdout the test drives line by line; its group is killed at the end.

    Without ``own_session`` the job gets a process group of its own in *our* session, as a
    shell runs a job (a group alone in its session is orphaned: the kernel discards ^Z there).
    """
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1")
    placement: Dict[str, Any] = {"start_new_session": True} if own_session else {"preexec_fn": os.setpgrp}
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, text=True, **placement)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()


def finish(t: Any, timeout: float = 30) -> Tuple[int, str]:
    rc = t.wait_exit(timeout)
    return rc, t.output()


# --- rewind ------------------------------------------------------------------------------------

REWIND_ONCE = """
import json, sys
from bridge import checkpoints
print("before the checkpoint")            # no flush: the buffer must not be copied into timelines
total = 10
cp = checkpoints.take({"file": __file__, "line": 6, "function": "<module>"})
print("AT", json.dumps([cp.rewinds, total, checkpoints.job_id(), checkpoints.lineage(), checkpoints.generation()]),
      flush=True)
if not cp.resumed:
    total += 5
    print("changed", total)                # no flush: written by the rewind (flushed first)
    checkpoints.rewind(cp)
    print("NOT REACHED")
total += 1
print("RESULT", total)
sys.exit(7)
"""


def test_rewind_restores_memory_and_the_job_exit_code_is_relayed(target: Any) -> None:
    # Block-buffered stdout (no PYTHONUNBUFFERED), the usual case for a job writing to a file.
    t = target(REWIND_ONCE, env={"PYTHONUNBUFFERED": ""})
    rc, out = finish(t)
    assert rc == 7, out
    assert out.count("before the checkpoint") == 1, out
    at = values(out, "AT")
    assert [a[:2] for a in at] == [[0, 10], [1, 10]], out  # the rewound timeline sees total == 10 again
    assert all(a[2] == t.pid for a in at), out  # job_id() is the supervisor's pid in every timeline
    first, second = at[0][3], at[1][3]
    assert first[0] == second[0] == t.pid and first[1] != second[1], out  # a new live process
    assert [a[4] for a in at] == [1, 2], out  # each live process has a newer generation
    assert out.count("changed 15") == 1 and "NOT REACHED" not in out, out
    assert re.findall(r"^RESULT .*$", out, re.M) == ["RESULT 11"], out
    assert_nothing_left(t.pid)


TWO_REWINDS = """
import json, random, sys
from bridge import checkpoints
items = [1, 2, 3]
cp = checkpoints.take({"function": "<module>"})
draw = random.random()
print("AT", json.dumps([cp.rewinds, items, draw]), flush=True)
if cp.rewinds < 2:
    items.append(cp.rewinds)
    items[0] = -1
    checkpoints.rewind(cp)
info = checkpoints.list_checkpoints()
print("LIST", json.dumps([[i.id, i.rewinds, i.state] for i in info]), flush=True)
print("RESULT", sum(items), flush=True)
sys.exit(3)
"""


def test_two_rewinds_to_the_same_checkpoint(target: Any) -> None:
    t = target(TWO_REWINDS)
    rc, out = finish(t)
    assert rc == 3, out
    at = values(out, "AT")
    assert [a[:2] for a in at] == [[0, [1, 2, 3]], [1, [1, 2, 3]], [2, [1, 2, 3]]], out
    assert len({a[2] for a in at}) == 1, out  # random's state is the checkpoint's in every timeline
    assert values(out, "LIST") == [[[1, 2, "kept"]]], out
    assert values(out, "RESULT") == [6], out
    assert_nothing_left(t.pid)


NESTED = """
import json, os, sys
from bridge import checkpoints
stage = "outer"
outer = checkpoints.take({"name": "outer"})
print("OUTER", json.dumps([outer.rewinds, stage]), flush=True)
if not outer.resumed:
    stage = "inner"
    inner = checkpoints.take({"name": "inner"})
    print("INNER", json.dumps([inner.rewinds, stage, checkpoints.lineage()]), flush=True)
    stage = "late"
    if not inner.resumed:
        checkpoints.rewind(inner)      # back one level first
    checkpoints.rewind(outer)          # then all the way out
info = checkpoints.list_checkpoints()
print("FINAL", json.dumps([stage, [(i.id, i.depth, i.label) for i in info], checkpoints.lineage()]), flush=True)
try:
    checkpoints.rewind(2)
except checkpoints.CheckpointError as exc:
    print("GONE", json.dumps(str(exc)), flush=True)
sys.exit(0)
"""


def test_nested_checkpoints_and_a_rewind_to_the_outer_one(target: Any) -> None:
    t = target(NESTED)
    rc, out = finish(t)
    assert rc == 0, out
    assert values(out, "OUTER") == [[0, "outer"], [1, "outer"]], out
    inner = values(out, "INNER")
    assert [i[:2] for i in inner] == [[0, "inner"], [1, "inner"]], out
    inner_keeper = inner[0][2][1]
    assert inner[0][2][0] == t.pid and len(inner[0][2]) == 3, out
    (stage, listed, lineage), = values(out, "FINAL")
    assert stage == "outer" and listed == [[1, 0, {"name": "outer"}]], out
    assert lineage[0] == t.pid and len(lineage) == 2, out
    assert state_of(inner_keeper) == "gone"  # the inner checkpoint's keeper died with its timeline
    assert "checkpoint 2 is not on this timeline" in values(out, "GONE")[0], out
    assert_nothing_left(t.pid)


DESCENDANT_REWINDS = """
import os, sys, time
from bridge import checkpoints
cp = checkpoints.take({})
print("AT", cp.rewinds, flush=True)
if not cp.resumed:
    child = os.fork()
    if child == 0:                      # a process the job forked rewinds the whole job
        checkpoints.rewind(cp)
    os.waitpid(child, 0)
    print("NOT REACHED", flush=True)    # the live process is killed by the rewind
sys.exit(4)
"""


def test_a_process_below_the_live_one_can_rewind_the_job(target: Any) -> None:
    t = target(DESCENDANT_REWINDS)
    rc, out = finish(t)
    assert rc == 4 and "NOT REACHED" not in out, out
    assert values(out, "AT") == [0, 1], out
    assert_nothing_left(t.pid)


ABANDONED_SUBPROCESS = """
import json, os, subprocess, sys, time
from bridge import checkpoints
cp = checkpoints.take({})
if not cp.resumed:
    # A process this timeline starts, printing on: it belongs to the timeline the rewind abandons.
    # (One write per line: a line cut in two by the kill would glue itself to the next one.)
    ticker = subprocess.Popen([sys.executable, "-c",
                               "import os, time\\nwhile True:\\n    os.write(1, b'tick\\\\n')\\n    time.sleep(0.01)"])
    with open(sys.argv[1], "w") as f:
        f.write(str(ticker.pid))
    deadline = time.monotonic() + 15
    while "tick" not in open(sys.argv[2]).read() and time.monotonic() < deadline:
        time.sleep(0.01)  # its first tick, then go back
    checkpoints.rewind(cp)
ticker = int(open(sys.argv[1]).read())
try:
    with open(f"/proc/{ticker}/stat", "rb") as f:
        state = f.read().rsplit(b")", 1)[1].split()[0].decode()
except OSError:
    state = "gone"
print("TICKER", json.dumps(state), flush=True)   # it ran no more once the new timeline started
sys.exit(0)
"""


def test_processes_the_abandoned_timeline_started_are_killed_with_it(target: Any, tmp_path: Path) -> None:
    # The job watches its own output (the file the fixture collects it in) for the first tick.
    t = target(ABANDONED_SUBPROCESS, str(tmp_path / "ticker.pid"), str(tmp_path / "target.py.0.out"))
    rc, out = finish(t)
    assert rc == 0, out
    assert values(out, "TICKER")[0] in ("gone", "Z"), out
    ticks_after = out.split("TICKER", 1)[1].count("tick")
    assert ticks_after == 0, out
    assert_nothing_left(t.pid)


# --- exit status, signals, leftovers ------------------------------------------------------------

WAIT_FOREVER = """
import json, os, signal, sys, time
from bridge import checkpoints
checkpoints.take({"n": 1})
if "nested" in sys.argv:
    checkpoints.take({"n": 2})
print("READY", json.dumps(checkpoints.lineage()), flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("nested", [False, True])
def test_sigterm_to_the_started_pid_ends_the_job_and_every_keeper(target: Any, nested: bool) -> None:
    t = target(WAIT_FOREVER, *(["nested"] if nested else []))
    lineage = values(t.wait_output("READY"), "READY")[0]
    assert len(lineage) == (3 if nested else 2)
    os.kill(t.pid, signal.SIGTERM)
    rc, out = finish(t)
    assert rc == -signal.SIGTERM, out  # the live process died of SIGTERM, and so does the job
    assert "Traceback" not in out, out
    assert_nothing_left(t.pid)


@pytest.mark.parametrize("nested", [False, True])
def test_a_live_process_killed_is_relayed_as_minus_9_and_nothing_is_left(target: Any, nested: bool) -> None:
    t = target(WAIT_FOREVER, *(["nested"] if nested else []))
    lineage = values(t.wait_output("READY"), "READY")[0]
    os.kill(lineage[-1], signal.SIGKILL)
    rc, out = finish(t)
    assert rc == -signal.SIGKILL, out
    assert_nothing_left(t.pid)


def test_sigkill_to_the_job_pid_takes_the_whole_chain_down(target: Any) -> None:
    t = target(WAIT_FOREVER, "nested")
    values(t.wait_output("READY"), "READY")
    os.kill(t.pid, signal.SIGKILL)  # no relaying possible: parent-death signals end the chain
    rc, _ = finish(t)
    assert rc == -signal.SIGKILL
    assert_nothing_left(t.pid)


COUNT_SIGINT = """
import os, signal, sys, time
from bridge import checkpoints
count = 0
def on_sigint(signum, frame):
    global count
    count += 1
    print("SIGINT in", os.getpid(), flush=True)
signal.signal(signal.SIGINT, on_sigint)
checkpoints.take({"n": 1})
if "nested" in sys.argv:
    checkpoints.take({"n": 2})
print("READY", checkpoints.lineage(), flush=True)
deadline = time.monotonic() + 20
while count == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
# One second in which a second delivery would show.
end = time.monotonic() + 1.0
while time.monotonic() < end:
    time.sleep(0.01)
print("COUNT", count, flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("to", ["group", "pid"])
@pytest.mark.parametrize("nested", [False, True])
def test_sigint_reaches_the_job_exactly_once(target: Any, to: str, nested: bool) -> None:
    t = target(COUNT_SIGINT, *(["nested"] if nested else []))
    t.wait_output("READY")
    if to == "group":
        os.killpg(t.pid, signal.SIGINT)  # the keepers and the live process all get it
    else:
        os.kill(t.pid, signal.SIGINT)  # only the root keeper gets it: it passes it on
    rc, out = finish(t)
    assert rc == 3, out
    assert values(out, "COUNT") == [1], out
    assert out.count("SIGINT in") == 1, out
    assert_nothing_left(t.pid)


def test_ctrl_c_in_a_terminal_reaches_the_job_once(tmp_path: Path) -> None:
    """A real terminal: ^C on a pty is a kernel-generated SIGINT to the foreground group."""
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(COUNT_SIGINT))
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=SRC, PYTHONUNBUFFERED="1")

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, str(script), "nested"], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True, preexec_fn=controlling_tty)
    os.close(slave)
    output = b""
    try:
        deadline = time.monotonic() + 30
        sent = False
        while time.monotonic() < deadline:
            if not sent and b"READY" in output:
                os.write(master, b"\x03")
                sent = True
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every process holding the terminal is gone
                    break
                if not chunk:
                    break
                output += chunk
        rc = proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    text = output.decode(errors="replace")
    assert rc == 3, text
    assert "COUNT 1" in text and text.count("SIGINT in") == 1, text
    assert_nothing_left(proc.pid)


ALARM = """
import os, signal, sys, time
from bridge import checkpoints
fired = []
signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(os.getpid()))
if sys.argv[1] == "root":
    signal.alarm(1)                      # the timer stays in the process that becomes the root keeper
checkpoints.take({})
if sys.argv[1] == "inner":
    signal.alarm(1)                      # the timer stays in the process that becomes an inner keeper
checkpoints.take({})
deadline = time.monotonic() + 20
while not fired and time.monotonic() < deadline:
    time.sleep(0.01)
print("ALARM", fired == [os.getpid()], flush=True)
sys.exit(0)
"""


@pytest.mark.parametrize("where", ["root", "inner"])
def test_the_jobs_alarm_fires_in_the_live_process(target: Any, where: str) -> None:
    t = target(ALARM, where)
    rc, out = finish(t)
    assert rc == 0 and "ALARM True" in out, out
    assert_nothing_left(t.pid)


STOP_AND_CONTINUE = """
import sys, time
from bridge import checkpoints
checkpoints.take({})
print("READY", checkpoints.lineage(), flush=True)
for line in sys.stdin:      # the test writes a line once it has stopped and continued the job
    break
print("DONE", flush=True)
sys.exit(9)
"""


def test_job_control_stop_and_continue_leave_nothing_stopped(tmp_path: Path) -> None:
    with piped_job(tmp_path, STOP_AND_CONTINUE, own_session=False) as proc:
        line = proc.stdout.readline()
        lineage = [int(p) for p in re.findall(r"\d+", line)]
        assert line.startswith("READY") and lineage[0] == proc.pid, line
        os.killpg(proc.pid, signal.SIGTSTP)  # a shell's ^Z: the job and its keeper stop
        wait_until(lambda: state_of(lineage[0]) == "T" and state_of(lineage[1]) == "T", timeout=10,
                   what="the keeper and the live process to stop")
        stopped = os.waitpid(proc.pid, os.WUNTRACED)  # what a shell sees: its job stopped
        assert os.WIFSTOPPED(stopped[1])
        os.killpg(proc.pid, signal.SIGCONT)  # fg
        wait_until(lambda: state_of(lineage[0]) != "T" and state_of(lineage[1]) != "T", timeout=10,
                   what="the keeper and the live process to continue")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "DONE\n"
        assert proc.wait(20) == 9
    assert_nothing_left(proc.pid)


SIGCHLD_IGNORED = """
import signal, sys
from bridge import checkpoints
signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # "reap my children for me"
cp = checkpoints.take({})
print("SIGCHLD", cp.rewinds, signal.getsignal(signal.SIGCHLD) is signal.SIG_IGN, flush=True)
if not cp.resumed:
    checkpoints.rewind(cp)
sys.exit(5)
"""


def test_a_job_that_ignores_sigchld_still_has_its_exit_code_relayed(target: Any) -> None:
    t = target(SIGCHLD_IGNORED)
    rc, out = finish(t)
    assert rc == 5, out
    assert "SIGCHLD 0 True" in out and "SIGCHLD 1 True" in out, out  # the job's setting, in each timeline
    assert_nothing_left(t.pid)


CHILD_ENDS_WHILE_KEPT = """
import os, subprocess, sys, time
from bridge import checkpoints
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
cp = checkpoints.take({})              # the helper is now the keeper's child, not the live process's
def state():
    try:
        with open(f"/proc/{helper.pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "gone"
deadline = time.monotonic() + 15
while state() != "gone" and time.monotonic() < deadline:
    time.sleep(0.02)
print("HELPER", state(), flush=True)    # "Z" would be a zombie nobody reaps
sys.exit(0)
"""


def test_the_keeper_reaps_the_jobs_older_children(target: Any) -> None:
    t = target(CHILD_ENDS_WHILE_KEPT)
    rc, out = finish(t)
    assert rc == 0 and "HELPER gone" in out, out
    assert_nothing_left(t.pid)


# --- threads ----------------------------------------------------------------------------------

THREADS = """
import os, sys, threading, warnings
from bridge import checkpoints
stop = threading.Event()
worker = threading.Thread(target=stop.wait, name="loader-7", daemon=True)
worker.start()
try:
    checkpoints.take({})
except checkpoints.ThreadsRunning as exc:
    print("REFUSED", exc.threads, flush=True)
    print("MESSAGE", exc, flush=True)
cp = checkpoints.take({}, force=True)
print("LIVE", cp.rewinds, [t.name for t in threading.enumerate()], cp.cannot_rewind["python_threads"], flush=True)
if not cp.resumed:
    checkpoints.rewind(cp)
sys.exit(0)
"""


@pytest.mark.parametrize("python", [sys.executable, PY312], ids=["this-python", "3.12"])
def test_other_threads_are_refused_by_name_and_allowed_with_force(target: Any, python: str) -> None:
    if not os.path.exists(python):
        pytest.skip(f"{python} is not installed")
    # 3.12+ warns about forking a multi-threaded process; "always" would show it if it escaped.
    t = target(THREADS, python=python, env={"PYTHONWARNINGS": "always::DeprecationWarning"})
    rc, out = finish(t)
    assert rc == 0, out
    assert "REFUSED [\"'loader-7' (daemon)\"]" in out, out
    assert "force=True" in out and "loader-7" in out.split("MESSAGE", 1)[1], out
    assert "LIVE 0 ['MainThread'] [\"'loader-7' (daemon)\"]" in out, out
    assert "LIVE 1 ['MainThread']" in out, out
    assert "DeprecationWarning" not in out and "multi-threaded" not in out, out
    assert_nothing_left(t.pid)


# --- drop, memory, what cannot be rewound ----------------------------------------------------------

BIG = """
import json, sys, time, zlib
from bridge import checkpoints
MIB = 1 << 20
data = bytearray(256 * MIB)
for i in range(0, len(data), 4096):
    data[i] = i % 251
crc = zlib.crc32(data)
t0 = time.perf_counter()
cp = checkpoints.take({"what": "256 MiB"})
took = time.perf_counter() - t0
if not cp.resumed:
    fresh = checkpoints.list_checkpoints()[0].memory
    for i in range(0, 64 * MIB, 4096):       # write 64 MiB: the keeper keeps the originals
        data[i] = 255
    written = checkpoints.list_checkpoints()[0].memory
    print("MEM", json.dumps([fresh, written, took]), flush=True)
    with open(sys.argv[1], "w") as f:
        f.write(repr(time.perf_counter()))
    checkpoints.rewind(cp)
rewound = time.perf_counter() - float(open(sys.argv[1]).read())
print("BACK", json.dumps([zlib.crc32(data) == crc, rewound]), flush=True)
sys.exit(0)
"""


def test_a_big_checkpoint_costs_only_what_the_job_writes_and_rewinds_intact(target: Any, tmp_path: Path) -> None:
    t = target(BIG, str(tmp_path / "t0"))
    rc, out = finish(t, timeout=60)
    assert rc == 0, out
    (fresh, written, took), = values(out, "MEM")
    mib = 1 << 20
    assert fresh["private"] < 32 * mib, fresh  # copy-on-write: a fresh snapshot costs next to nothing
    assert written["private"] >= 60 * mib, written  # the pages the job wrote since
    assert fresh["rss"] > 250 * mib  # the keeper maps all of it
    (intact, rewound), = values(out, "BACK")
    assert intact, out
    # Timings (not asserted: the machine is shared); tests/bench/bench_checkpoint.py measures.
    print(f"256 MiB: take {took * 1000:.1f} ms, rewind to running again {rewound * 1000:.1f} ms")
    assert_nothing_left(t.pid)


DROP = """
import json, os, signal, sys
from bridge import checkpoints
signal.signal(signal.SIGUSR1, lambda signum, frame: print("USR1 in", os.getpid(), flush=True))
ballast = bytearray(128 << 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
outer = checkpoints.take({"name": "outer"})
if not outer.resumed:
    ballast[:] = bytes(len(ballast))          # the outer keeper alone now maps the old 128 MiB
inner = checkpoints.take({"name": "inner"})
print("INNER", inner.rewinds, flush=True)
if not inner.resumed:
    print("HELD", json.dumps([i.memory["private"] for i in checkpoints.list_checkpoints()]), flush=True)
    checkpoints.drop(outer)
    checkpoints.drop(outer)                   # a second drop does nothing
    print("DROPPED", outer.keeper, flush=True)
    sys.stdin.readline()                      # the test checks the relay's memory meanwhile
    print("STATES", json.dumps([i.state for i in checkpoints.list_checkpoints()]), flush=True)
    checkpoints.rewind(inner)                 # still possible: only the outer one was dropped
try:
    checkpoints.rewind(outer)
except checkpoints.CheckpointError as exc:
    print("REFUSED", json.dumps(str(exc)), flush=True)
sys.exit(11)
"""


def test_drop_frees_the_snapshot_and_the_relay_still_relays(tmp_path: Path) -> None:
    with piped_job(tmp_path, DROP) as proc:
        lines = []
        while not lines or not lines[-1].startswith("DROPPED"):
            lines.append(proc.stdout.readline())
            assert lines[-1], lines
        outer_held, inner_held = values("".join(lines), "HELD")[0]
        # The inner keeper shares the new pages with the live process: private to neither.
        assert outer_held >= 120 << 20 and inner_held < 32 << 20, (outer_held, inner_held)
        root = int(lines[-1].split()[1])
        assert root == proc.pid

        def relay_small() -> bool:
            # The same pid now runs the relay (its command line says so: mid-exec it is empty)...
            with open(f"/proc/{root}/cmdline", "rb") as f:
                if b"bridge.checkpoints.relay" not in f.read():
                    return False
            with open(f"/proc/{root}/smaps_rollup") as f:
                private = sum(int(line.split()[1]) for line in f if line.startswith("Private_"))
            return private < 40 * 1024  # kB: ...a fresh interpreter, not the 128 MiB snapshot

        wait_until(relay_small, timeout=10, what="the dropped keeper to free its memory")
        os.kill(root, signal.SIGUSR1)  # the relay passes signals on as the keeper did
        assert proc.stdout.readline().startswith("USR1 in ")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        rest = proc.stdout.read()
        assert proc.wait(30) == 11, rest  # the exit code came up through the relay
    assert values(rest, "STATES") == [["dropped", "kept"]], rest
    assert "INNER 1" in rest, rest
    assert "was dropped" in values(rest, "REFUSED")[0], rest
    assert_nothing_left(proc.pid)


INVENTORY = """
import json, os, socket, subprocess, sys
from bridge import checkpoints
log = open(sys.argv[1], "w")
log.write("x" * 1234)
log.flush()
import mmap
with open(sys.argv[2], "wb") as f:          # a file named like the CUDA driver, mapped as it would be
    f.write(bytes(4096))
with open(sys.argv[2], "rb") as f:
    fake_driver = mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ)
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.create_connection(server.getsockname())
helper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
cp = checkpoints.take({"file": "job.py", "line": 12, "function": "main"})
info = checkpoints.list_checkpoints()[0]
print("INFO", json.dumps([info.as_dict(), server.getsockname()[1], helper.pid]), flush=True)
helper.stdin.close()   # the keeper still holds a copy: the helper ends when the job does
sys.exit(0)
"""


def test_what_cannot_be_rewound_is_listed(target: Any, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    t = target(INVENTORY, str(log), str(tmp_path / "libcuda.so.1"))
    rc, out = finish(t)
    assert rc == 0, out
    (info, port, helper), = values(out, "INFO")
    assert info["label"] == {"file": "job.py", "line": 12, "function": "main"} and info["state"] == "kept"
    assert info["keeper"] == t.pid and info["memory"]["private"] > 0
    cannot = info["cannot_rewind"]
    files = [d for d in cannot["descriptors"] if d["kind"] == "file"]
    assert {"path": str(log), "offset": 1234, "mode": "w"}.items() <= next(
        d for d in files if d["path"] == str(log)).items(), cannot
    tcp = [d for d in cannot["descriptors"] if d["kind"] == "socket" and d.get("proto") == "tcp"]
    assert any(d["local"] == f"127.0.0.1:{port}" and d["state"] == "LISTEN" for d in tcp), tcp
    assert any(d.get("peer") == f"127.0.0.1:{port}" and d["state"] == "ESTABLISHED" for d in tcp), tcp
    assert [c["pid"] for c in cannot["children"]] == [helper], cannot  # the job's child stays the keeper's
    assert cannot["gpu"] == ["libcuda.so.1"] and cannot["python_threads"] == []
    assert cannot["native_thread_count"] >= 1
    # Our own descriptors (the record, the control sockets) are not the job's: not listed.
    assert not any("memfd:framebridge" in d.get("path", "") for d in cannot["descriptors"]), cannot
    assert_nothing_left(t.pid)


BAD_INPUT = """
import json, os, sys
from bridge import checkpoints
try:
    checkpoints.take({"value": object()})
except TypeError as exc:
    print("LABEL", json.dumps(str(exc)), flush=True)
print("AFTER", json.dumps([checkpoints.lineage(), checkpoints.list_checkpoints(), checkpoints.job_id(),
                          checkpoints.generation()]), flush=True)
for call in (lambda: checkpoints.rewind(1), lambda: checkpoints.drop(1)):
    try:
        call()
    except checkpoints.CheckpointError as exc:
        print("NONE", json.dumps(str(exc)), flush=True)
cp = checkpoints.take({})
try:
    checkpoints.rewind(99)
except checkpoints.CheckpointError as exc:
    print("UNKNOWN", json.dumps(str(exc)), flush=True)
print("AVAILABLE", json.dumps(checkpoints.available()), flush=True)
sys.exit(0)
"""


def test_bad_requests_get_clear_errors_and_change_nothing(target: Any) -> None:
    t = target(BAD_INPUT)
    rc, out = finish(t)
    assert rc == 0, out
    assert "JSON-able" in values(out, "LABEL")[0], out
    assert values(out, "AFTER") == [[[t.pid], [], t.pid, 0]], out  # no chain was started
    assert all("has no checkpoints" in m for m in values(out, "NONE")) and len(values(out, "NONE")) == 2, out
    assert "checkpoint 99 is not on this timeline" in values(out, "UNKNOWN")[0], out
    assert values(out, "AVAILABLE") == [None], out
    assert_nothing_left(t.pid)


def test_the_connection_between_take_and_the_keeper_costs_one_descriptor_each(target: Any) -> None:
    """The live process holds one sender per checkpoint and the shared record: nothing more."""
    t = target("""
        import json, os, sys
        from bridge import checkpoints
        def fds():
            out = {}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    out[fd] = os.readlink("/proc/self/fd/" + fd)
                except OSError:
                    pass  # the listing's own descriptor, closed by now
            return out
        before = fds()
        checkpoints.take({})
        checkpoints.take({})
        after = fds()
        print("EXTRA", json.dumps(sorted(t for fd, t in after.items() if before.get(fd) != t)), flush=True)
    """)
    rc, out = finish(t)
    assert rc == 0, out
    extra = values(out, "EXTRA")[0]
    assert len(extra) == 3 and sum(e.startswith("socket:") for e in extra) == 2, extra
    assert any("framebridge-checkpoints" in e for e in extra), extra


# --- with framebridge's own server (what the integration will do, done by hand) --------------------

WITH_SERVER = """
import json, os, sys
import bridge
from bridge import checkpoints, server
bridge.listen()                          # framebridge's threads run: they do not count as the job's
cp = checkpoints.take({"function": "<module>"},
                      on_keeper=lambda cp, live: server.current_server().stop())   # the keeper hides
value = 41 + cp.rewinds
print("LIVE", json.dumps(checkpoints.lineage()), flush=True)
bridge.set_trace()                       # a fresh server in the live process (new keys, new file)
print("CONTINUED", value, flush=True)
if not cp.resumed:
    checkpoints.rewind(cp)
sys.exit(0)
"""


def test_a_client_attaches_to_each_live_process_the_keeper_hides(target: Any, attach_to: Any) -> None:
    import client
    from bridge import keys

    t = target(WITH_SERVER)
    for timeline, expected in enumerate((41, 42)):
        wait_until(lambda: len(values(t.output(), "LIVE")) > timeline, timeout=30, what="a live process")
        live = values(t.output(), "LIVE")[timeline]
        assert live[0] == t.pid and len(live) == 2
        path = keys.connection_path(live[1])
        wait_until(path.exists, timeout=20, what="the live process's connection file")
        wait_until(lambda: not keys.connection_path(t.pid).exists(), timeout=20, what="the keeper to hide")
        s = client.attach(live[1])
        try:
            s.wait(20)
            assert s.eval("value") == expected
            assert s.eval("cp.rewinds") == timeline
            s.cont()
        finally:
            s.close()
    rc, out = finish(t)
    assert rc == 0, out
    assert "CONTINUED 41" in out and "CONTINUED 42" in out and "Traceback" not in out, out
    assert_nothing_left(t.pid)
