"""Paused at module level (``secret_value = 42``) while a worker thread keeps counting
``counter[0]`` up, about once a millisecond: the job's own work, which must go on."""
import threading
import time

import bridge

counter = [0]


def work():
    while True:
        counter[0] += 1
        time.sleep(0.001)


threading.Thread(target=work, name="worker", daemon=True).start()
secret_value = 42
bridge.set_trace()  # @pause
