"""The IPython magics in a REAL kernel (jupyter_client) against REAL target processes.

One kernel serves the module (starting one costs ~1 s); each test points it at that
test's private key and runtime dirs first, and detaches at the end.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator

import pytest

pytestmark = pytest.mark.kernel

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

from kernel_driver import Kernel, result, stream

PAUSED_JOB = """
import bridge

def job():
    data = {"a": [1, [2, 3]], "b": {"c": 1}}
    n = 5
    label = "orig"
    bridge.set_trace()
    print("after", json.dumps(data, sort_keys=True), n, label, flush=True)

import json
job()
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(str(tmp_path_factory.mktemp("kernel")))
    try:
        k.ok("%load_ext client")
        yield k
    finally:
        k.shutdown()


@pytest.fixture
def k(kernel: Kernel, bridge_dirs: Dict[str, Any]) -> Iterator[Kernel]:
    """The module's kernel, pointed at this test's private config and runtime dirs."""
    dirs = {"BRIDGE_CONFIG_DIR": str(bridge_dirs["config"]), "BRIDGE_RUNTIME_DIR": str(bridge_dirs["runtime"])}
    kernel.ok(f"import os; os.environ.update({json.dumps(dirs)})")
    yield kernel
    kernel.run("import client as _c\n_s = _c.set_current_session(None)\n_s is not None and _s.close()")


def _paused_target(target: Any, source: str = PAUSED_JOB) -> Any:
    t = target(source)
    t.wait_attachable()
    return t


def test_attach_and_where(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    out = k.ok(f"%attach {t.pid} --wait 20")
    assert f"pid={t.pid}" in result(out)
    assert "framebridge session" in result(out, "text/html")
    assert str(t.pid) in stream(k.ok("print(client_pid := __import__('client').current_session().pid)"))

    out = k.ok("%where")
    html = result(out, "text/html")
    assert "<table" in html and "job" in html and "fb-sel" in html  # the selected frame is marked
    assert "[0] job at" in result(out)


def test_attach_without_pid_picks_the_paused_process(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    deadline = time.monotonic() + 20  # the connection file says "paused" once the pause registered
    while "paused" not in t.connection_file().read_text() or '"paused": []' in t.connection_file().read_text():
        assert time.monotonic() < deadline, "target never reported its pause"
        time.sleep(0.02)  # the file has no change notification
    out = k.ok("%attach")
    assert f"pid={t.pid}" in result(out)


def test_magic_without_session_says_attach_first(k: Kernel) -> None:
    reply, outputs = k.run("%where")
    assert reply["status"] == "error"
    assert reply["ename"] == "NoSession" and "%attach" in reply["evalue"]


def test_remote_cell_runs_in_the_frame_and_shows_the_last_value(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    k.ok(f"%attach {t.pid} --wait 20")
    out = k.ok("%%remote\nprint('inside', n, label)\nn = n + 1\nn * 10")
    assert stream(out) == "inside 5 orig\n"
    assert result(out) == "60"
    out = k.ok("%%remote\ndata['a'][1].append(4)\nlabel = 'fixed'")
    assert not [o for o in out if o["output_type"] == "execute_result"]  # no trailing expression, no value
    reply, out = k.run("%%remote\n1/0")
    assert reply["status"] == "error" and "ZeroDivisionError" in reply["evalue"]
    k.ok("import client; client.current_session().cont()")
    text = t.wait_output("after")
    assert 'after {"a": [1, [2, 3, 4]], "b": {"c": 1}} 6 fixed' in text


def test_playground_mutates_deeply_and_the_target_is_unchanged(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    k.ok(f"%attach {t.pid} --wait 20")
    cell = (
        "%%playground\n"
        "data['a'][1].append(99)\n"        # nested in-place mutation
        "del data['b']\n"                  # delete a key
        "data['a'] = data['a'] + ['x']\n"  # rebind an item
        "n = -1\n"                         # rebind a local
        "label += ' changed'\n"
        "import json, sys\n"
        "json.dumps = None\n"              # mutate a module the job uses
        "print('inside the copy:', data, n)\n"
        "(data, n, label)"
    )
    out = k.ok(cell)
    assert "inside the copy: {'a': [1, [2, 3, 99], 'x']} -1" in stream(out)
    assert result(out) == "({'a': [1, [2, 3, 99], 'x']}, -1, 'orig changed')"

    out = k.ok("%%remote\n(data, n, label, json.dumps.__name__)")
    assert result(out) == "({'a': [1, [2, 3]], 'b': {'c': 1}}, 5, 'orig', 'dumps')"
    k.ok("import client; client.current_session().cont()")
    assert 'after {"a": [1, [2, 3]], "b": {"c": 1}} 5 orig' in t.wait_output("after")


def test_playground_that_hangs_is_killed_and_the_target_goes_on(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    k.ok(f"%attach {t.pid} --wait 20")
    started = time.monotonic()
    reply, out = k.run("%%playground --timeout 1\nn = 0\nwhile True:\n    n += 1")
    assert reply["status"] == "error"
    assert "PlaygroundTimeout" in reply["evalue"] and "killed" in reply["evalue"]
    assert time.monotonic() - started < 15
    reply, out = k.run("%%playground\nprint('partial')\nraise KeyError('boom')")
    assert reply["status"] == "error" and "KeyError" in reply["evalue"]
    assert "partial" in stream(out)
    assert result(k.ok("%%remote\nn")) == "5"  # the target still serves, unchanged
    k.ok("import client; client.current_session().cont()")
    t.wait_output("after")


def test_jump_writes_back(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    k.ok(f"%attach {t.pid} --wait 20")
    k.ok("n = 'notebook n'")  # a notebook variable the mount shadows
    k.ok("%%jump\nn = n + 100\ndata['a'].append('nb')\nlabel = label.upper()")
    assert result(k.ok("n")) == "'notebook n'"  # the notebook's own value is back
    assert result(k.ok("%%remote\n(n, label, data['a'])")) == "(105, 'ORIG', [1, [2, 3], 'nb'])"
    k.ok("import client; client.current_session().cont()")
    assert 'after {"a": [1, [2, 3], "nb"], "b": {"c": 1}} 105 ORIG' in t.wait_output("after")


def test_jump_discard_and_error_write_nothing(k: Kernel, target: Any) -> None:
    t = _paused_target(target)
    k.ok(f"%attach {t.pid} --wait 20")
    out = k.ok("%%jump --discard\nn = 0\ndata['a'].clear()")
    assert "discarded" in stream(out)
    reply, out = k.run("%%jump\nn = 1\nraise ValueError('stop')")
    assert "ValueError" in json.dumps(out)  # IPython showed the cell's error...
    assert "the cell raised: nothing was written back" in stream(out, "stderr")  # ...and we said so
    assert result(k.ok("%%remote\n(n, data['a'])")) == "(5, [1, [2, 3]])"
    k.ok("import client; client.current_session().cont()")
    assert 'after {"a": [1, [2, 3]], "b": {"c": 1}} 5 orig' in t.wait_output("after")


GROUP_JOB = """
import sys
import bridge

def job():
    n = int(sys.argv[1])
    bridge.set_trace()
    print("n", n, flush=True)

job()
"""


def test_attach_all_and_remote_all(k: Kernel, target: Any) -> None:
    from bridge import keys

    keys.load_client_keypair()  # before the targets: several processes creating it at once race
    first = target(GROUP_JOB, "0", name="job.py")
    second = target(GROUP_JOB, "1", name="unused.py", module_args=[str(first.script)])  # one file: one stack
    for t in (first, second):
        t.wait_paused_in_file()
    try:
        out = k.ok("%attach --all --wait 20 -n 2")
        assert "group of 2 members, 2 paused" in result(out)
        assert "<table" in result(out, "text/html")

        out = k.ok("%%remote --all\nprint('seen', n)\nn * 10")
        printed = stream(out)
        for t, n in ((first, 0), (second, 1)):
            assert f":{t.pid} ---\nseen {n}\n" in printed, printed
        assert "eval on 2 members: 2 answered" in result(out)
        html = result(out, "text/html")
        assert ">0<" in html and ">10<" in html

        k.ok("%%remote --all\nn = n + 100")
        assert "1 stack across 2 processes" in result(k.ok("__import__('client').current_group().where()"))
        k.ok("__import__('client').current_group().cont()")
        assert "n 100" in first.wait_output("n ") and "n 101" in second.wait_output("n ")
    finally:
        k.run("%detach --all")
# --- %%patch (client/patch_magic.py), against tests/targets/patchable.py

PATCH_CONT = "import client; client.current_session().cont(); client.current_session().wait(20)"


def _attached_to_patchable(k: Kernel, target: Any) -> Any:
    t = target.script("patchable", "3")
    t.wait_attachable()
    k.ok(f"%attach {t.pid} --wait 20")
    return t


def test_patch_cell_replaces_functions_and_methods(k: Kernel, target: Any) -> None:
    t = _attached_to_patchable(k, target)
    out = k.ok("%%patch\n"
               "def scale(x):\n"
               "    return x * 100\n"
               "\n"
               "class Model:\n"
               "    def step(self, x):\n"
               "        return -x\n")
    text = result(out)
    assert "patched function __main__.scale" in text and "patched method __main__.Model.step" in text
    assert "<table" in result(out, "text/html") and "Model.step" in result(out, "text/html")
    k.ok(PATCH_CONT)
    assert result(k.ok("%%remote\nout[:2]")) == "(100, -1)"  # round 1, through the old references
    reply, out = k.run("%%patch\nimport os\n")
    assert reply["status"] == "error" and reply["ename"] == "PatchError" and "not a def" in reply["evalue"]
    reply, out = k.run("%%patch --frobnicate\ndef scale(x):\n    return x\n")
    assert reply["status"] == "error" and reply["ename"] == "UsageError" and "--frobnicate" in reply["evalue"]
    k.ok(PATCH_CONT)
    k.ok("import client; client.current_session().cont()")
    assert "round 1 (100, -1," in t.wait_output("done")


def test_patch_try_runs_the_call_in_a_copy_first(k: Kernel, target: Any) -> None:
    t = _attached_to_patchable(k, target)
    # the trial raises: nothing changes in the live process
    reply, out = k.run("%%patch --try scale(3)\ndef scale(x):\n    return x / 0\n")
    assert reply["status"] == "error" and "ZeroDivisionError" in reply["evalue"]
    assert "raised in the trial copy" in stream(out, "stderr")
    assert result(k.ok("%%remote\nscale(3), len(__import__('bridge.patching').patching.patches())")) == "(6, 0)"
    # a patch the copy refuses is refused before the live process is asked
    reply, out = k.run("%%patch --try scale(3)\ndef scale(x):\n    yield x\n")
    assert reply["status"] == "error" and reply["ename"] == "PatchError" and "trial copy" in reply["evalue"]
    # --dry-run: only the trial
    out = k.ok("%%patch --dry-run --try scale(3) + 1\ndef scale(x):\n    return x * 100\n")
    assert "scale(3) + 1 -> 301" in stream(out) and result(out) == "301"
    assert result(k.ok("%%remote\nscale(3)")) == "6"
    # the trial works: its value is shown, then the live process is patched
    out = k.ok("%%patch --try scale(3)\ndef scale(x):\n    print('new scale', x)\n    return x * 100\n")
    assert "new scale 3\n" in stream(out) and "trial in a copy of the process" in stream(out)
    assert "scale(3) -> 300" in stream(out) and "patched function __main__.scale" in result(out)
    assert result(k.ok("%%remote\nscale.__code__.co_filename.endswith('-scale.py')")) == "True"
    k.ok(PATCH_CONT)
    k.ok(PATCH_CONT)
    k.ok("import client; client.current_session().cont()")
    assert "round 1 (100," in t.wait_output("done")
