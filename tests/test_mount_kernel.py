"""jump_context inside a real IPython kernel (jupyter_client), against a real target.

The kernel attaches to the paused target, runs a ``with jump_context():`` cell that
mutates a DataFrame (mounted into IPython's ``user_ns``), and continues the target; the
target's own output shows the change. Recipe: shared/recipes/notebook-testing/kernel_recipe.py.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time

import pytest

from conftest import SRC

pytestmark = pytest.mark.kernel

TIMEOUT = 60.0


class Kernel:
    """A started kernel and a blocking client; every wait is bounded."""

    def __init__(self, env: dict, cwd: str) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3", ip="127.0.0.1")
        # The kernel must run this interpreter (framebridge installed, and src/ first).
        self.km.kernel_spec.argv[0] = sys.executable
        self.km.start_kernel(env=env, cwd=cwd)
        self.pid = self.km.provisioner.process.pid
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def run(self, code: str) -> tuple:
        """Run a cell: (status, stdout text, error text)."""
        msg_id = self.kc.execute(code)
        out, err = [], []
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish within {TIMEOUT}s: {code[:60]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                err.append("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
        return reply["content"]["status"], "".join(out), "".join(err)

    def shutdown(self) -> None:
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        finally:
            try:  # last resort, by the pid we started
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def kernel(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    k = Kernel(env, str(tmp_path))
    yield k
    k.shutdown()


def test_jump_context_in_a_kernel_mutates_a_dataframe_in_the_target(target, kernel):
    t = target("""
        import pandas as pd, bridge
        def work():
            df = pd.DataFrame({"amount": [5, -3, 8]})
            threshold = 0
            bridge.set_trace()
            print("ROWS", df["amount"].tolist(), "THRESHOLD", threshold, flush=True)
        work()
    """)
    t.wait_attachable()
    status, out, err = kernel.run(
        "from client import attach, jump_context\n"
        f"s = attach({t.pid})\n"
        "_ = s.wait(20)\n"
        "df = 'the notebook own df'\n"
    )
    assert status == "ok", err
    status, out, err = kernel.run(
        "with jump_context() as m:\n"
        "    df.loc[df.amount < 0, 'amount'] = 0\n"
        "    threshold = 10\n"
        "    print('DIFF', sorted(m.diff().changed))\n"
        "print('AFTER', df, 'threshold' in dir())\n"
        "s.cont()\n"
    )
    assert status == "ok", err
    assert "DIFF ['df', 'threshold']" in out
    assert "AFTER the notebook own df False" in out     # user_ns restored
    assert "ROWS [5, 0, 8] THRESHOLD 10" in t.wait_output("ROWS")
