"""Attachable without pausing (``bridge.listen()``): prints ``listening`` and waits forever."""
import threading

import bridge

bridge.listen()
print("listening", flush=True)
threading.Event().wait()
