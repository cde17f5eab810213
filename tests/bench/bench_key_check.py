"""What checking each request's client key costs (docs/security.md, "Revoking a key").

Run (one command; both cases measured in the same run, interleaved)::

    python tests/bench/bench_key_check.py [--n 20000] [--rounds 5]

A CURVE ROUTER with the target's real ZAP handler (``bridge.key_policy.KeyPolicy``) and
one authorized DEALER in this process. Batches of requests (an identity, a 60-byte
header) are queued, then received:

* ``recv_parts``: how the server thread and lanes received a request before (bytes parts);
* ``recv_from_peer + admits``: how they receive it now: the first part as a Frame, its
  ``User-Id`` property read, and the key checked against the authorized set.

Reported: the median cost per request of each, and the difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import interleave, private_dirs, table  # noqa: E402

BATCH = 500


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000, help="requests per case per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    private_dirs()

    import zmq
    from zmq.auth.thread import ThreadAuthenticator

    from bridge import keys
    from bridge.key_policy import KeyPolicy, recv_from_peer
    from bridge.protocol import recv_parts

    mine = keys.load_client_keypair()
    policy = KeyPolicy()
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=policy)
    public, secret = zmq.curve_keypair()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server, router.curve_publickey, router.curve_secretkey = True, public, secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.curve_serverkey = public
    dealer.curve_publickey, dealer.curve_secretkey = mine.public.encode(), mine.secret.encode()
    dealer.connect(f"tcp://127.0.0.1:{port}")
    header = b'{"v": 2, "id": 1, "op": "eval", "args": {"expr": "x", "frame": 0}}'

    def per_request_us(receive) -> float:
        spent = 0.0
        for _ in range(args.n // BATCH):
            for _ in range(BATCH):
                dealer.send(header)
            assert router.poll(10000)
            while router.get(zmq.EVENTS) & zmq.POLLIN == 0:
                pass
            t0 = time.perf_counter()
            for _ in range(BATCH):
                receive()
            spent += time.perf_counter() - t0
        return spent / args.n * 1e6

    def old() -> None:
        recv_parts(router, 0, 2)

    def new() -> None:
        key, _ = recv_from_peer(router, 0, 2)
        assert policy.admits(key)

    per_request_us(old)  # the handshake and warm-up
    results = interleave({"recv_parts": lambda: per_request_us(old),
                          "recv_from_peer + admits": lambda: per_request_us(new)}, args.rounds)
    print(table([[name, f"{us:.2f}"] for name, us in results.items()], ["case", "us per request"]))
    print(f"\nthe key check costs {results['recv_from_peer + admits'] - results['recv_parts']:.2f} us per request")
    dealer.close(0)
    router.close(0)
    auth.stop()
    ctx.term()


if __name__ == "__main__":
    main()
