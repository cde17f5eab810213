"""A small ETL-like job: pauses in ``transform`` with rows, a threshold and a closure.

After the pause it prints ``kept [...] threshold N`` and, last, ``done``.
"""
import bridge


def transform(batch):
    rows = [r * 2 for r in batch]
    threshold = 3
    factor = 10

    def scale(v):
        return v * factor

    bridge.set_trace()  # @pause
    kept = [scale(r) for r in rows if r > threshold]
    print("kept", kept, "threshold", threshold, flush=True)
    return kept


def main():
    label = "outer"
    return transform([1, 2, 3])


main()
print("done", flush=True)
