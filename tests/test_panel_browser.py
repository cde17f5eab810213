"""The DebugPanel in a real JupyterLab, in headless Chromium, against a real target.

JupyterLab runs on 127.0.0.1 with a token and throw-away dirs; its kernels inherit this
test's BRIDGE_CONFIG_DIR / BRIDGE_RUNTIME_DIR, so the panel finds the target the test
started. The test acts as a user: runs the panel cell, steps with the
button and with F10, sets a breakpoint by clicking a line number and continues into it
with F5, clicks a DataFrame and an array in the variables, opens the compact panel in
the right sidebar, and reads the job's output as it runs. It saves a screenshot of each
state under its tmp dir (``screenshots/``).

Needs Debian's chromium (``apt-get install -y chromium``) and ``pip install jupyterlab
playwright`` (no ``playwright install``: the browser is the system one). Skips, saying
which is missing, without them. ``FRAMEBRIDGE_PANEL_SCREENSHOT=path`` also copies the
screenshot of the plot state there (docs/img/panel.png).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from bridge.keys import process_alive

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "notebooks" / "panel_test.ipynb"
SRC = str(HERE.parent / "src")
CHROMIUM = os.environ.get("FRAMEBRIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_S = 60
# The kernel is really idle only when it has a name AND the indicator says idle
# (the indicator alone reads "idle" while the toolbar still says "No Kernel").
JS_KERNEL_IDLE = """() => {
  const k = document.querySelector('.jp-NotebookPanel-toolbar .jp-Toolbar-kernelName');
  const i = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
  return !!(k && i && k.textContent.trim() !== 'No Kernel' && i.getAttribute('data-status') === 'idle');
}"""


def _missing() -> str:
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    if importlib.util.find_spec("jupyterlab") is None:
        return "jupyterlab is not installed (pip install jupyterlab)"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return ""


if _missing():
    pytestmark = [pytest.mark.browser, pytest.mark.skip(reason=_missing())]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> List[int]:
    """Every descendant of ``pid`` (read from /proc), to clean up the kernels we caused."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        frontier += kids
    return out



class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with its own dirs; stopped by the pid we started."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None
        self.kernels: List[int] = []

    def _request(self, method: str, path: str) -> int:
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def start(self, notebook: Path) -> None:
        for d in ("root", "config", "data", "runtime", "workspaces"):
            (self.tmp / d).mkdir(parents=True)
        shutil.copy(notebook, self.root / notebook.name)
        settings = self.tmp / "settings"
        for rel, data in {  # no news toast over the page; every cell in the DOM
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        }.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(data))
        env = dict(os.environ,  # BRIDGE_* dirs of this test: the kernel must see the target
                   JUPYTER_CONFIG_DIR=str(self.tmp / "config"), JUPYTER_DATA_DIR=str(self.tmp / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(self.tmp / "workspaces"), JUPYTER_PLATFORM_DIRS="1",
                   PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("JUPYTER_TOKEN", None)
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
        if os.geteuid() == 0:
            cmd.append("--ServerApp.allow_root=True")
        self.log = open(self.tmp / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if self._request("GET", "/api/status") == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab not ready in {TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.1)  # polling an HTTP endpoint: nothing to wait on

    def url(self, name: str) -> str:
        return f"{self.base}/lab/tree/{name}?token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.tmp / "server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> List[int]:
        """Shut down (kernels too); escalate on our own pids only. Returns pids left alive."""
        if self.proc is None:
            return []
        self.kernels = sorted(set(self.kernels) | set(_children(self.proc.pid)))
        try:
            self._request("POST", "/api/shutdown")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(process_alive(k) for k in self.kernels) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [k for k in self.kernels if process_alive(k)]
        for k in left:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        return left


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    server = JupyterLab(tmp_path / "lab")
    server.start(NOTEBOOK)
    try:
        yield server
    finally:
        assert server.stop() == [], "a kernel outlived the server"


TARGET = """
import time, bridge
import numpy as np
import pandas as pd

bridge.listen()  # attachable from the start: the job's output is kept from here on

def train(epochs):
    losses = np.exp(-np.linspace(0, 4, 400)) + 0.03 * np.sin(np.linspace(0, 60, 400))
    history = pd.DataFrame({"epoch": range(epochs), "loss": losses[:epochs].round(4), "lr": [0.01] * epochs})
    config = {"model": "mlp", "layers": [64, 32], "optimizer": {"name": "adam", "lr": 0.01}}
    for epoch in range(epochs):  # @for
        loss = float(losses[epoch])  # @loss
        print(f"epoch {epoch} loss {loss:.4f}", flush=True)
        if epoch == 2:
            bridge.set_trace()  # @pause
        total = loss * 2  # @next
    return history

train(6)
for i in range(40):
    print(f"evaluating batch {i}", flush=True)
    time.sleep(0.1)
print("finished", flush=True)
"""


def _shot(page: Any, panel: Any, path: Path) -> None:
    panel.screenshot(path=str(path))
    assert path.stat().st_size > 5000, path


def test_panel_in_jupyterlab(target: Any, lab: JupyterLab, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    from conftest import line_of

    line = {name: line_of(TARGET, name) for name in ("for", "loss", "pause", "next")}
    t = target(TARGET)
    t.wait_paused_in_file()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ms = TIMEOUT_S * 1000
    expect.set_options(timeout=ms)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=ms)
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 1100})
            ctx.set_default_timeout(ms)
            ctx.set_default_navigation_timeout(ms)
            page = ctx.new_page()
            errors: List[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(lab.url(NOTEBOOK.name), wait_until="domcontentloaded")
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(state="visible")
            page.wait_for_function(JS_KERNEL_IDLE, timeout=ms, polling=100)
            page.evaluate("window.__fbSamePage = true")  # gone if a key reloads the page

            # Run the panel cell as a user does.
            page.locator(".jp-NotebookPanel .jp-CodeCell").first.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            panel = page.locator(".fb-panel")
            panel.wait_for(state="visible")
            state, source = page.locator(".fb-state"), page.locator(".fb-source")
            expect(state).to_contain_text("paused")
            expect(state).to_contain_text(f"target.py:{line['pause']}")
            expect(source.locator("tr.fb-cur")).to_have_attribute("data-line", str(line["pause"]))
            expect(source.locator(".fb-src-title")).to_contain_text("in train()")
            expect(page.locator(".fb-vars")).to_contain_text("history")
            expect(page.locator(".fb-stack select option").first).to_contain_text("#0 train()")
            assert page.get_by_text("Error displaying widget").count() == 0
            # The job's output, kept by the target since bridge.listen().
            expect(page.locator(".fb-output")).to_contain_text("epoch 2 loss")
            _shot(page, panel, shots / "1-paused.png")

            # The source view follows a `next`.
            page.locator("button.fb-next").click()
            expect(source.locator("tr.fb-cur")).to_have_attribute("data-line", str(line["next"]))
            _shot(page, panel, shots / "2-next.png")

            # F10 steps, once the panel has focus (a click on it).
            page.locator(".fb-state").click()
            expect(panel).to_have_class(re.compile(r"\bfb-armed\b"))
            page.keyboard.press("F10")
            expect(source.locator("tr.fb-cur")).to_have_attribute("data-line", str(line["for"]))
            _shot(page, panel, shots / "3-f10.png")

            # A breakpoint set by clicking a line number is hit (F5 continues into it).
            source.locator(f"tr[data-line='{line['loss']}'] td.fb-gutter").click()
            expect(source.locator(f"tr.fb-bp[data-line='{line['loss']}']")).to_have_count(1)
            expect(page.locator(".fb-bp-list select option").first).to_contain_text(f"target.py:{line['loss']}")
            page.keyboard.press("F5")
            expect(state).to_contain_text(f"(breakpoint) at target.py:{line['loss']}")
            expect(source.locator("tr.fb-cur")).to_have_attribute("data-line", str(line["loss"]))
            assert page.evaluate("window.__fbSamePage === true"), "F5 reloaded the page"
            _shot(page, panel, shots / "4-breakpoint.png")

            # Click a DataFrame: a table; click a 1-D array: a plot.
            page.locator(".fb-vars tr[data-key='history']").click()
            table = page.locator(".fb-inspector table.dataframe")
            expect(table).to_be_visible()
            expect(table.locator("tbody tr")).to_have_count(6)
            expect(page.locator(".fb-inspector")).to_contain_text("6 × 3")
            _shot(page, panel, shots / "5-dataframe.png")

            # The console runs in the selected frame.
            box = page.locator(".fb-console-input input")
            box.fill("history.loss.mean()")
            box.press("Enter")  # commits the value (continuous_update=False)
            # Click only once the kernel has the value: it echoes it (pitfall #4).
            expect(page.locator(".fb-console-echo")).to_have_text("next: history.loss.mean()")
            page.locator("button.fb-console-run").click()
            expect(page.locator(".fb-console-log pre.fb-in").first).to_contain_text(">>> history.loss.mean()")
            expect(page.locator(".fb-console-log pre.fb-out").first).to_contain_text("0.98605")
            page.locator(".fb-vars tr[data-key='losses']").click()
            plot = page.locator(".fb-inspector svg.fb-plot path.fb-line")
            expect(plot).to_be_visible()
            expect(page.locator(".fb-inspector")).to_contain_text("400")
            shot = shots / "6-plot.png"
            _shot(page, panel, shot)
            if os.environ.get("FRAMEBRIDGE_PANEL_SCREENSHOT"):
                shutil.copy(shot, os.environ["FRAMEBRIDGE_PANEL_SCREENSHOT"])

            # Clicking the number again clears the breakpoint (continuing must not stop there again).
            source.locator(f"tr[data-line='{line['loss']}'] td.fb-gutter").click()
            expect(source.locator("tr.fb-bp")).to_have_count(0)
            # Right-click a number: the condition form sets a conditional breakpoint (never true here).
            source.locator(f"tr[data-line='{line['next']}'] td.fb-gutter").click(button="right")
            source.locator("input.fb-cond-input").fill("epoch == 99")
            source.locator("input.fb-cond-input").press("Enter")
            expect(source.locator(f"tr.fb-bp-cond[data-line='{line['next']}']")).to_have_count(1)
            expect(page.locator(".fb-bp-list select option").first).to_contain_text("if epoch == 99")

            # The compact panel in JupyterLab's right sidebar (the same panel, shown twice).
            page.locator(".jp-NotebookPanel .jp-CodeCell").nth(1).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            side = page.locator("#jp-right-stack .fb-panel.fb-compact")
            expect(side).to_be_visible()
            expect(side.locator(".fb-source tr.fb-cur")).to_have_attribute("data-line", str(line["loss"]))
            page.screenshot(path=str(shots / "7-sidebar.png"))

            # Continue: the job's printed lines keep arriving in the output view while it runs.
            page.locator(".jp-NotebookPanel button.fb-cont").click()
            expect(page.locator(".jp-NotebookPanel .fb-output")).to_contain_text("evaluating batch 5")
            expect(page.locator(".jp-NotebookPanel .fb-state")).to_contain_text("running")
            _shot(page, page.locator(".jp-NotebookPanel .fb-panel"), shots / "8-running.png")
            assert t.wait_exit(TIMEOUT_S) == 0
            out = t.output()
            assert "epoch 5 loss" in out and "finished" in out, out
            lab.kernels = _children(lab.proc.pid)
            assert not errors, errors
        finally:
            browser.close()
