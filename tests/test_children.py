"""Child processes made attachable (bridge/children.py): every multiprocessing start method,
concurrent.futures, subprocess; attach_all(tree=pid) finds them.

Spawned interpreters become attachable through the ``framebridge-children.pth`` file an
install puts in site-packages, so these tests run their targets with a small venv whose
site-packages holds that file and a path file to this checkout and to the running
interpreter's packages: what ``pip install -e .`` makes, in a second and without a
network. The last test builds the real wheel and editable install and checks the hook
ships with both.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

import client
from bridge import keys
from bridge.children import ENV_VAR
from conftest import SRC, wait_until

ROOT = Path(SRC).parent
PTH = Path(SRC) / "framebridge-children.pth"

#: A child's work: pause with ``rows``, return their sum once continued.
WORK = """
    import bridge

    def work(n):
        rows = list(range(n))
        bridge.set_trace()
        return sum(rows)
"""

POOL_JOB = WORK + """
    import multiprocessing as mp, sys

    if __name__ == "__main__":
        with mp.get_context(sys.argv[1]).Pool(2) as pool:
            print("results", pool.map(work, [3, 4], chunksize=1), flush=True)
"""

EXECUTOR_AND_SUBPROCESS = WORK + """
    import concurrent.futures, multiprocessing as mp, subprocess, sys

    if __name__ == "__main__":
        bridge.listen(children=True)
        child = subprocess.Popen([sys.executable, "-c",
                                  "import bridge\\nrows = [1, 2]\\nbridge.set_trace()\\nprint('sub', sum(rows), flush=True)"])
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            print("future", pool.submit(work, 3).result(), flush=True)
        child.wait()
"""


def paths_for_children() -> List[str]:
    """This checkout's src, then the running interpreter's package directories."""
    own = [p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p) and os.path.isdir(p)]
    return [SRC] + [p for p in dict.fromkeys(own + site.getsitepackages()) if os.path.isdir(p)]


def site_packages(env_dir: Path) -> Path:
    found = sorted(env_dir.glob("lib/python*/site-packages")) or sorted(env_dir.glob("Lib/site-packages"))
    return found[0]


def running_site_packages() -> Dict[str, Any]:
    """The running interpreter's site-packages: every entry's name, and the mtime of those
    of framebridge's install (an uninstall removes them, a reinstall rewrites them)."""
    found: Dict[str, Any] = {}
    for directory in {Path(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}:
        for entry in directory.iterdir():
            found[str(entry)] = entry.stat().st_mtime_ns if "framebridge" in entry.name else None
    return found


@pytest.fixture(scope="module")
def children_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A venv's python whose site-packages has the hook, as an install of framebridge has."""
    env_dir = tmp_path_factory.mktemp("children-venv") / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    packages = site_packages(env_dir)
    # "aaa-" sorts before the hook: the path file is read first, as an install's packages are there first.
    (packages / "aaa-framebridge-paths.pth").write_text("\n".join(paths_for_children()) + "\n")
    shutil.copyfile(PTH, packages / PTH.name)
    python = env_dir / "bin" / "python"
    return str(python if python.exists() else env_dir / "Scripts" / "python.exe")


def run_tree(target: Any, source: str, python: str, *args: str, via_runner: bool = True) -> Any:
    keys.load_client_keypair()  # N processes creating the user's key at once would race
    if via_runner:
        t = target(source, *args, python=python, module_args=["-m", "bridge", "--children", "target.py"])
    else:
        t = target(source, *args, python=python)
    t.wait_attachable()
    return t


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_workers_of_each_start_method_are_found_paused_and_fixed(target, children_python, method):
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} start method on this platform")
    t = run_tree(target, POOL_JOB, children_python, method)
    g = client.attach_all(tree=t.pid)
    try:
        paused = g.wait(n=2, timeout=60)  # the workers start, become attachable and pause
        assert len(paused) == 2 and t.pid not in {s.pid for s in paused}
        # The parent and its two workers; never multiprocessing's helpers (forkserver, tracker).
        assert sorted(s.pid for s in g) == sorted([t.pid] + [s.pid for s in paused]), g
        r = g.eval("len(rows)")
        assert sorted(r.values().values()) == [3, 4] and r.skipped == [g[t.pid].name]
        assert g.set(rows=[10, 20]).ok
        assert g.cont().ok
        assert "results [30, 30]" in t.wait_output("results", timeout=30)
        assert t.wait_exit(30) == 0
    finally:
        g.close()


def test_executor_workers_and_python_subprocesses_are_attachable(target, children_python):
    t = run_tree(target, EXECUTOR_AND_SUBPROCESS, children_python, via_runner=False)
    g = client.attach_all(tree=t.pid)
    try:
        paused = g.wait(n=2, timeout=60)
        assert sorted(g.eval("sum(rows)").values().values()) == [3, 3]
        assert t.pid not in {s.pid for s in paused}  # the executor's worker and the subprocess
        g.cont()
        out = t.wait_output("sub ", timeout=30)
        assert "future 3" in t.wait_output("future", timeout=30) and "sub 3" in out
        assert t.wait_exit(30) == 0
    finally:
        g.close()


def test_without_the_variable_the_hook_does_nothing(target, children_python):
    t = target("import time, os; print('pid', os.getpid(), flush=True); time.sleep(30)\n", python=children_python,
               env={ENV_VAR: "0"})
    t.wait_output("pid")
    time.sleep(0.5)  # a start-up hook that ran would have written its file by now
    assert not t.connection_file().exists()


def test_a_forked_child_of_an_attachable_process_exits(target, children_python):
    t = target("""
        import os, sys, time
        import bridge
        bridge.listen(children=True)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs the parent's atexit hooks in the child: they must not hang it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("child exited", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status, flush=True)
                break
            time.sleep(0.05)  # waitpid with a deadline: there is no waitpid timeout
        else:
            print("child still alive", flush=True)
    """, python=children_python)
    assert "child exited 0" in t.wait_output("child ", timeout=30)
    assert t.wait_exit(20) == 0


def test_a_child_forked_while_a_parent_thread_held_framebridge_locks_serves(target):
    """The locks of framebridge's process-wide state (reply cache, bulk data server and
    outbox) may be held by a parent's thread at the fork: the child's own server must
    not wait for them (bridge/forks.py). Here a thread holds all of them across the fork."""
    t = target("""
        import os, sys, threading
        import bridge
        from bridge import outcomes
        from bridge.bulk import dataport, outgoing

        bridge.listen(children=True)
        held, done = threading.Event(), threading.Event()

        def hold():
            with dataport._data_server_lock, outgoing._outbox_lock, outcomes.CACHE._lock:
                held.set()
                done.wait(60)

        threading.Thread(target=hold, daemon=True).start()
        held.wait(60)
        pid = os.fork()
        if pid == 0:
            rows = [1, 2, 3]
            bridge.set_trace()
            sys.exit(0)
        done.set()
        print("child", pid, flush=True)
        os.waitpid(pid, 0)
        print("child reaped", flush=True)
    """)
    out = t.wait_output("child ", timeout=30)  # after 3.12's warning about forking a threaded process
    child = int(re.search(r"^child (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    wait_until(lambda: keys.connection_path(child).exists(), 30, "the child's connection file")
    with client.attach(child, timeout=10) as s:  # hello, bulk_hello (the data server), subscribe
        s.wait(20)
        assert s.eval("sum(rows)") == 6
        assert len(s.eval("bytes(8 << 20)")) == 8 << 20  # a reply through the bulk path (the outbox)
        s.cont()
    assert "child reaped" in t.wait_output("child reaped", timeout=30)
    assert t.wait_exit(20) == 0


def test_forks_framebridge_makes_itself_start_no_server(target, children_python):
    from client.playground import run_playground

    t = run_tree(target, """
        import bridge
        x = 5
        bridge.set_trace()
    """, children_python)
    with client.attach(t.pid) as s:
        s.wait(20)
        result = run_playground(s, "import os\nos.getpid()")
        assert result.value != t.pid
        assert not keys.connection_path(result.value).exists()  # the playground's fork stayed quiet
        s.cont()


@pytest.mark.slow
def test_the_pth_hook_ships_in_wheels_and_editable_installs(tmp_path, target):
    """Build the wheel and an editable install the way users do (pip, setuptools) from a copy
    of this checkout; each puts the hook at the top of site-packages, and a python of
    each venv started with the variable becomes attachable. The running interpreter's
    pip does the installs, into the temporary venvs only: the running environment (where
    framebridge itself is installed) is left exactly as it was."""
    source = tmp_path / "checkout"
    for name in ("src", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    running = running_site_packages()
    built = subprocess.run(pip + ["wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    if built.returncode != 0 and "No matching distribution" in built.stderr + built.stdout:
        pytest.skip(f"pip cannot fetch the build requirements here: {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("framebridge-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert z.read(PTH.name) == PTH.read_bytes()  # at the root of the wheel: site-packages

    for kind, spec in (("wheel", [str(wheel)]), ("editable", ["-e", str(source)])):
        env_dir = tmp_path / f"{kind}-venv"
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
        packages = site_packages(env_dir)
        # --target implies --ignore-installed; with --prefix pip would otherwise uninstall the
        # framebridge it finds installed in the running environment before installing.
        installed = subprocess.run(pip + ["install", "--no-deps", "--target", str(packages)] + spec
                                   if kind == "wheel" else
                                   pip + ["install", "--no-deps", "--ignore-installed", "--prefix", str(env_dir)] + spec,
                                   capture_output=True, text=True, timeout=300)
        assert installed.returncode == 0, installed.stderr
        now = running_site_packages()
        assert {k: v for k, v in now.items() if k in running} == running, \
            f"pip install ({kind}) changed the running environment: {sorted(set(running) ^ set(now))}"
        assert (packages / PTH.name).read_bytes() == PTH.read_bytes(), sorted(p.name for p in packages.iterdir())
        # framebridge's dependencies from the running interpreter (no network), read first
        deps = [p for p in paths_for_children()[1:]]
        (packages / "aaa-deps.pth").write_text("\n".join(deps) + "\n")
        python = str(env_dir / "bin" / "python")
        t = target("import time, bridge; print('from', bridge.__file__, flush=True); time.sleep(30)\n",
                   python=python, env={ENV_VAR: "1", "PYTHONPATH": ""}, name=f"{kind}.py")
        t.wait_attachable(30)
        where = t.wait_output("from")
        assert (str(source) if kind == "editable" else str(packages)) in where, where
