"""Frame ops behind jump_context: snapshots with fingerprints, write-back, live references.

(Being filled in by the jump_context work; the module exists so the op registry can
import it.)
"""
