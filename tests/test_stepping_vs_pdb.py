"""Stepping compared with pdb: every corpus script, the same commands, the same stops.

``tests/stepping/driver.py`` runs each script of ``tests/stepping/corpus`` under pdb and
under framebridge (the real ``python -m bridge`` runner, its server included) in one
process per side, on the Python running this test. A script whose stops or ending
differ fails, unless the difference is in ``ALLOWED`` with its reason (docs/stepping.md
lists the same). An allowed difference that is gone fails too: the list stays true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "stepping" / "driver.py"
CORPUS = sorted((HERE / "stepping" / "corpus").glob("*.py"))
SRC = str(HERE.parent / "src")
TIMEOUT = 90.0

# script -> (on which Pythons the difference is expected, why: docs/stepping.md)
ALLOWED: Dict[str, Tuple[Callable[[], bool], str]] = {
    "generator_next.py": (
        lambda: sys.version_info >= (3, 10),
        "pdb's `next` on a generator's last line, when a for loop drives the generator, "
        "runs on to the program's end (3.10+ report no event when the loop ends the "
        "generator); framebridge stops at the next line after the generator returns",
    ),
    "generator_step_out.py": (
        lambda: sys.version_info >= (3, 10),
        "the same for pdb's `return` in a generator: framebridge's step_out stops at the "
        "next line after the generator returns",
    ),
}


def _run(side: str, env: Dict[str, str]) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, str(DRIVER), side, *map(str, CORPUS)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(HERE))


def _collect(proc: "subprocess.Popen[str]") -> Dict[str, dict]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the stepping driver did not finish in {TIMEOUT}s:\n{err[-3000:]}")
    assert proc.returncode == 0, f"the stepping driver failed ({proc.returncode}):\n{err[-3000:]}"
    results = {}
    for line in out.splitlines():
        data = json.loads(line)
        results[data.pop("script")] = data
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, dict]]:
    """Both sides' stops for every script (one driver process per side, in parallel);
    before 3.12 also framebridge with its sys.settrace fallback backend."""
    root = tmp_path_factory.mktemp("stepping")
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               BRIDGE_CONFIG_DIR=str(root / "config"), BRIDGE_RUNTIME_DIR=str(root / "runtime"),
               BRIDGE_WAIT_TIMEOUT="0.05")  # a post-mortem pause resumes at once
    env.pop("BRIDGE_TRACING_BACKEND", None)
    sides = {"pdb": _run("pdb", env), "framebridge": _run("framebridge", env)}
    if sys.version_info < (3, 12):
        sides["framebridge (sys.settrace)"] = _run("framebridge", dict(env, BRIDGE_TRACING_BACKEND="sys.settrace"))
    return {name: _collect(proc) for name, proc in sides.items()}


def _show(result: dict) -> str:
    return f"{' '.join(result['stops'])}  [{result['end']}]"


@pytest.mark.parametrize("script", [p.name for p in CORPUS])
def test_same_stops_as_pdb(outcomes: Dict[str, Dict[str, dict]], script: str) -> None:
    reference = outcomes["pdb"][script]
    assert not reference["end"].startswith("driver error"), reference["end"]
    allowed, why = ALLOWED.get(script, (lambda: False, ""))
    for side, results in outcomes.items():
        if side == "pdb":
            continue
        ours = results[script]
        assert not ours["end"].startswith("driver error"), ours["end"]
        if allowed():
            assert ours != reference, f"{script}: the allowed difference is gone ({why}); take it off ALLOWED"
        else:
            assert ours == reference, f"{script} stops differently under {side}:\n  pdb:  {_show(reference)}\n" \
                                      f"  ours: {_show(ours)}"


def test_the_corpus_covers_the_cases_docs_promise() -> None:
    names = {p.stem for p in CORPUS}
    for case in ("calls", "loop", "exceptions", "uncaught", "generator", "with_block", "comprehension",
                 "one_line_loop", "one_line_loop_bp", "finalizer", "end_of_program", "lambda_bp", "genexpr"):
        assert case in names, case
