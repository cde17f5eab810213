"""A small numpy training loop that diverges, and pauses so you can rescue it live.

Linear regression by gradient descent on synthetic data. The learning rate is too
high, so the loss blows up after a few epochs. The loop notices and pauses with
``bridge.set_trace()``; from a notebook you lower the learning rate and restore the
last good weights, continue, and the run converges -- without restarting, without
losing the epochs already done:

    >>> s = client.attach()
    >>> s.eval("history[-5:]")                 # the loss going up
    >>> s.set(lr=0.05, w=s.eval("best_w"))     # one all-or-nothing write
    >>> s.cont()

``BRIDGE_WAIT_TIMEOUT=SECONDS`` (or ``--wait-timeout``) bounds the pause.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import numpy as np

try:
    import bridge
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import bridge


def make_data(n: int = 512, features: int = 8, seed: int = 0):
    """Synthetic regression data with known true weights."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    true_w = rng.normal(size=features)
    y = X @ true_w + 0.1 * rng.normal(size=n)
    return X, y, true_w


def train(X: np.ndarray, y: np.ndarray, lr: float, epochs: int) -> np.ndarray:
    """Full-batch gradient descent on mean squared error; pauses if the loss diverges."""
    w = np.zeros(X.shape[1])
    best_w, best_loss = w.copy(), np.inf
    history: List[float] = []
    epoch = 0
    while epoch < epochs:
        residual = X @ w - y
        loss = float(residual @ residual / len(y))
        history.append(loss)
        if loss < best_loss:
            best_w, best_loss = w.copy(), loss
        if not np.isfinite(loss) or loss > 100 * best_loss:
            print(f"epoch {epoch}: loss {loss:.3g} is diverging (best {best_loss:.3g}); "
                  f"pausing (pid {os.getpid()})", flush=True)
            lr_before, w_before = lr, w
            bridge.set_trace()  # lower `lr`, restore `w = best_w`, then continue
            if lr == lr_before and w is w_before:
                print("no fix arrived; stopping early with the best weights", flush=True)
                return best_w
            print(f"resuming with lr={lr}", flush=True)
            continue  # recompute the loss with the fixed weights
        grad = 2 * X.T @ residual / len(y)
        w = w - lr * grad
        epoch += 1
    return w


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1.2, help="learning rate (1.2 diverges)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--wait-timeout", type=float, default=None,
                        help="give up waiting for a client after this many seconds")
    args = parser.parse_args(argv)
    if args.wait_timeout is not None:
        os.environ["BRIDGE_WAIT_TIMEOUT"] = str(args.wait_timeout)
    X, y, true_w = make_data()
    w = train(X, y, args.lr, args.epochs)
    loss = float(np.mean((X @ w - y) ** 2))
    print(f"final loss {loss:.4f}; weight error {float(np.max(np.abs(w - true_w))):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
