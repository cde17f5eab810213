"""A job to take checkpoints of: its state changes between pauses; one RESULT line at the end.

    rewindable.py [STEPS]      (2 steps unless given)

``total`` starts at 10 and ``items`` empty; it pauses first at ``# @start``. Each step
appends the step number to ``items``, adds 5 to ``total``, prints ``STEP <n> <total>``
and pauses at ``# @step``. At the end it prints ``RESULT {"total": ..., "items": [...]}``
once and exits with code 3 (so that the job's exit code is told apart from success).
"""
import json
import sys

import bridge

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2
total = 10
items = []
bridge.set_trace()  # @start
for step in range(steps):
    items.append(step)
    total += 5
    print("STEP", step, total, flush=True)
    bridge.set_trace()  # @step
print("RESULT", json.dumps({"total": total, "items": items}), flush=True)
sys.exit(3)
