"""Pauses once at module level with ``x = 41`` (argv[1], if given, is printed after it resumes)."""
import sys

import bridge

x = 41
bridge.set_trace()  # @pause
if len(sys.argv) > 1:
    print(sys.argv[1], flush=True)
