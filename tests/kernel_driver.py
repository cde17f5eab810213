"""Driving a real IPython kernel from tests (jupyter_client), every wait bounded.

One driver for every kernel test: start a kernel on this interpreter with the test's
environment, run cells, and read their outputs the way a notebook would.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from conftest import SRC

CELL_TIMEOUT = 60.0
Outputs = List[Dict[str, Any]]


class Kernel:
    """A live kernel and a blocking client."""

    def __init__(self, cwd: str, env: Optional[Dict[str, str]] = None) -> None:
        from jupyter_client import KernelManager

        full_env = dict(os.environ if env is None else env)
        full_env.pop("BRIDGE_WAIT_TIMEOUT", None)
        full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
        # IPC sockets, not TCP: jupyter_client picks free ports before the kernel binds them,
        # a race that other processes on a busy machine sometimes win.
        self.km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(cwd, "kernel"))
        # The kernel must run this interpreter: framebridge is installed here, src/ first.
        self.km.kernel_spec.argv[0] = sys.executable
        self.km.start_kernel(cwd=cwd, env=full_env)
        self.pid = self.km.provisioner.process.pid
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=CELL_TIMEOUT)
        except BaseException:
            self.shutdown()
            raise

    def run(self, code: str, timeout: float = CELL_TIMEOUT) -> Tuple[Dict[str, Any], Outputs]:
        """Run a cell: (execute_reply content, its iopub outputs)."""
        msg_id = self.kc.execute(code)
        outputs: Outputs = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cell did not finish within {timeout}s: {code[:60]!r}")
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"].get("execution_state") == "idle":
                break
            if kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append(dict(msg["content"], output_type=kind))
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:  # skip stale replies
            reply = self.kc.get_shell_msg(timeout=timeout)
        return reply["content"], outputs

    def ok(self, code: str, timeout: float = CELL_TIMEOUT) -> Outputs:
        """Run a cell that must succeed; return its outputs."""
        reply, outputs = self.run(code, timeout)
        assert reply["status"] == "ok", f"cell failed: {code!r}\n{error_text(outputs)}"
        return outputs

    def shutdown(self) -> None:
        """Stop the kernel; SIGKILL it by its pid if it does not go."""
        try:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=True)
        finally:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def error_text(outputs: Outputs) -> str:
    """The errors among a cell's outputs, as text."""
    return "\n".join(f"{o['ename']}: {o['evalue']}\n" + "\n".join(o.get("traceback", []))
                     for o in outputs if o["output_type"] == "error")


def stream(outputs: Outputs, name: str = "stdout") -> str:
    """What a cell printed to ``name``."""
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def result(outputs: Outputs, mime: str = "text/plain") -> str:
    """The last displayed value of a cell in ``mime``."""
    found = [o["data"][mime] for o in outputs if o["output_type"] in ("execute_result", "display_data")
             and mime in o["data"]]
    assert found, f"no {mime} output in {outputs}"
    return found[-1]
