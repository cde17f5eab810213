"""Each example runs as a real target; a real client attaches, inspects, fixes, continues."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

import client

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(target: Any, name: str, *args: str) -> Any:
    """Start examples/<name> as a target (its pause bounded, in case the test fails midway)."""
    return target("", *args, "--wait-timeout", "60", module_args=[str(EXAMPLES / name)], name=f"unused_{name}")


def test_etl_pipeline(target: Any, attach_to: Any) -> None:
    t = run_example(target, "etl_pipeline.py")
    s = attach_to(t)
    assert s.stack()[0].function == "transform"
    variables = s.locals()
    assert variables["unknown"].repr == "['CHF']" and "CHF" not in variables["rates"].repr
    s.exec("rates['CHF'] = 1.05")
    s.cont()
    assert t.wait_exit() == 0
    out = t.output()
    assert "total            1059.80" in out and "skipped" not in out


def test_etl_rewind(target: Any, attach_to: Any) -> None:
    t = run_example(target, "etl_rewind.py")
    s = attach_to(t)
    assert s.stack()[0].function == "main"
    cp = s.checkpoint()  # before transform, as the example's docstring does
    s.cont()
    s.wait(30)
    assert s.stack()[0].function == "validate"  # the check found the bug, after the stage ran
    assert s.eval("(round(total, 2), control_total)") == (961.18, 1059.8)
    s.rewind(cp)
    assert s.stack()[0].function == "main" and s.eval("'revenue' in dir()") is False
    s.patch("to_eur", "def to_eur(amount, rate):\n    return amount * rate\n")
    s.cont()
    assert t.wait_exit() == 0  # the pid the test started: the timeline that finished
    out = t.output()
    assert out.count("validate: total 961.18") == 1  # said once, by the abandoned timeline
    assert "matches the control total" in out and "total            1059.80" in out, out
    assert out.count("day         revenue") == 1


def test_training_loop(target: Any, attach_to: Any) -> None:
    pytest.importorskip("numpy")
    t = run_example(target, "training_loop.py")
    s = attach_to(t)
    history = s.eval("history")
    assert history[-1] > 100 * min(history)  # paused because the loss blew up
    best_w = s.eval("best_w")
    assert best_w.shape == (8,)
    s.set(lr=0.05, w=best_w)
    s.cont()
    assert t.wait_exit() == 0
    out = t.output()
    assert "resuming with lr=0.05" in out
    final = float(re.search(r"final loss ([0-9.]+)", out).group(1))
    assert final < 0.02, out


def test_worker_pool(target: Any) -> None:
    t = run_example(target, "worker_pool.py", "--check")
    t.wait_output("attach with")
    g = client.attach_all(tree=t.pid)  # the job and its workers, as docs/howto-worker-pool.md does
    try:
        paused = g.wait(n=3, timeout=60)  # --check: every worker pauses after checking its partition
        assert t.pid not in {s.pid for s in paused} and len(g) == 4
        bad = g.eval("len(bad)")
        assert bad.ok and sorted(bad.values().values()) == [0, 0, 1]
        culprit = next(name for name, n in bad.values().items() if n)
        assert g.where().summary() == "1 stack across 3 processes"
        w = g[culprit]
        assert w.eval("bad") == [{"sku": "B-7", "qty": "3x", "price": 4.5}]
        w.exec("bad[0]['qty'] = '3'")  # the same dict as in `lines`: fixed in place
        assert g.cont().ok and not g.paused()
    finally:
        g.close()
    assert t.wait_exit(30) == 0
    out = t.output()
    assert "grand total 177.50" in out and "skipped" not in out


def _capped_notebook_client() -> Any:
    """nbclient's NotebookClient whose shell reads wake every 0.25 s.

    Works around a lost wake-up in nbclient (jupyter/nbclient#312) that stalls a cell for
    its whole timeout when widgets send messages; see shared/recipes/notebook-testing.
    """
    import queue

    from nbclient import NotebookClient

    class CappedPollNotebookClient(NotebookClient):
        async def async_start_new_kernel_client(self):  # type: ignore[no-untyped-def]
            kc = await super().async_start_new_kernel_client()
            channel = kc.shell_channel
            original = channel.get_msg

            async def get_msg(timeout=None):  # type: ignore[no-untyped-def]
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    step = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
                    try:
                        return await original(timeout=step)
                    except queue.Empty:
                        if deadline is not None and time.monotonic() >= deadline:
                            raise

            channel.get_msg = get_msg
            return kc

    return CappedPollNotebookClient


@pytest.mark.kernel
def test_demo_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    for name in ("demo.ipynb", "etl_pipeline.py"):
        (tmp_path / name).write_bytes((EXAMPLES / name).read_bytes())
    nb = nbformat.read(str(tmp_path / "demo.ipynb"), as_version=4)
    client_cls = _capped_notebook_client()
    try:
        client_cls(nb, timeout=60, startup_timeout=60, kernel_name="python3", shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        log = tmp_path / "etl_job.log"
        text = log.read_text() if log.exists() else ""
        pid = re.search(r"pausing for a fix \(pid (\d+)\)", text)
        if pid and Path(f"/proc/{pid.group(1)}").exists():
            import os
            import signal

            os.kill(int(pid.group(1)), signal.SIGKILL)  # the job the notebook started, if a cell failed
    outputs = ["".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in c.outputs)
               for c in nb.cells if c.cell_type == "code"]
    joined = "\n".join(outputs)
    assert "(0, {})" in joined  # the playground emptied its copy...
    assert "(8, {'EUR': 1.0, 'USD': 0.92, 'GBP': 1.17, 'CHF': 1.05})" in joined  # ...not the job
    assert "total            1059.80" in outputs[-1]


def test_dask_etl(target: Any) -> None:
    distributed = pytest.importorskip("distributed", reason="distributed (the `cluster` extra) is not installed")
    t = run_example(target, "dask_etl.py")
    scheduler = re.search(r"^scheduler (\S+)$", t.wait_output("scheduler tcp://", timeout=60), re.M).group(1)
    # timeout: also how long the client would try to reconnect once the job's scheduler is gone
    with distributed.Client(scheduler, timeout=5) as dask_client:
        g = client.attach_dask(dask_client)
        try:
            w = g.wait(1, timeout=60)[0]
            assert w.name in dask_client.scheduler_info()["workers"]
            report = g.where()
            assert len(report.classes) == 1 and report.classes[0].frames[0].function.endswith("clean_partition")
            assert g.eval("partition_id").values() == {w.name: 3}
            assert w.eval("bad") == [{"id": 31, "amount": "12,50"}]
            w.set(bad=[{"id": 31, "amount": "12.50"}])
            assert g.cont().ok
            t.wait_output("total ", timeout=60)
        finally:
            g.close()  # while the job's scheduler is still up, if it can be
    assert t.wait_exit(timeout=60) == 0
    out = t.output()
    assert "partition 3: 2 rows,    20.00" in out and "total 205.00" in out and "skipped" not in out, out
