"""jump_context inside a real IPython kernel (jupyter_client), against a real target.

The kernel attaches to the paused target, runs a ``with jump_context():`` cell that
mutates a DataFrame (mounted into IPython's ``user_ns``), and continues the target; the
target's own output shows the change. Recipe: shared/recipes/notebook-testing/kernel_recipe.py.
"""

from __future__ import annotations


import pytest

from kernel_driver import Kernel, error_text, stream

pytestmark = pytest.mark.kernel



@pytest.fixture
def kernel(tmp_path):
    k = Kernel(str(tmp_path))
    yield k
    k.shutdown()


def run(kernel: Kernel, code: str) -> tuple:
    """Run a cell: (status, stdout text, stderr and error text)."""
    reply, outputs = kernel.run(code)
    return reply["status"], stream(outputs), stream(outputs, "stderr") + error_text(outputs)


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
    status, out, err = run(
        kernel,
        "from client import attach, jump_context\n"
        f"s = attach({t.pid})\n"
        "_ = s.wait(20)\n"
        "df = 'the notebook own df'\n"
    )
    assert status == "ok", err
    status, out, err = run(
        kernel,
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
