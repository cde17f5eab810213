"""The ``framebridge`` command: list targets, manage keys, a terminal console, the demo.

    framebridge list                  attachable processes of this user, with pause state
    framebridge keys                  this user's public key and fingerprint (created on first use)
    framebridge keys --authorize KEY  let the holder of KEY attach to this user's targets
    framebridge attach [PID]          a console whose input runs inside the paused frame
    framebridge demo                  run the ETL example, attach, fix it, continue (no setup)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from bridge import keys

from .errors import BridgeError


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``framebridge`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(_bind_key_arguments(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BridgeError as exc:
        print(f"framebridge: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"framebridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _bind_key_arguments(argv: List[str]) -> List[str]:
    """Glue the key after ``--authorize`` to it: a z85 key may start with '-', which
    argparse would otherwise take for an option and refuse."""
    out: List[str] = []
    it = iter(argv)
    for word in it:
        if word == "--authorize":
            out.append("--authorize=" + next(it, ""))
        else:
            out.append(word)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framebridge", description="Debug a paused Python job from a notebook.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="attachable processes of this user")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("keys", help="show (or create) this user's key; authorize another key")
    p.add_argument("--authorize", metavar="KEY", help="a client public key (z85, 40 characters) to authorize")
    p.add_argument("--comment", default="", help="a note stored next to the authorized key")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("attach", help="a terminal console in the paused frame")
    p.add_argument("pid", nargs="?", type=int, help="process id (default: the one paused process)")
    p.add_argument("--console", choices=("auto", "ipython", "plain"), default="auto",
                   help="auto: IPython on a terminal if installed, else a plain console")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the process to pause (default 60)")
    p.set_defaults(func=cmd_attach)

    p = sub.add_parser("demo", help="run the ETL example, attach, fix a variable, continue")
    p.set_defaults(func=cmd_demo)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    """``framebridge list``."""
    from .discovery import sessions

    found = sessions()
    if args.json:
        print(json.dumps([s.raw for s in found], indent=1))
        return 0
    if not found:
        print(f"no attachable processes (runtime dir {keys.runtime_dir()})")
        return 0
    for info in found:
        print(info)
    print(f"(runtime dir {keys.runtime_dir()})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``framebridge keys [--authorize KEY]``."""
    if args.authorize:
        key = args.authorize.strip()
        added = keys.authorize_key(key, comment=args.comment)
        state = "authorized" if added else "was already authorized"
        print(f"{keys.fingerprint(key)} {state} (in {keys.config_dir() / keys.AUTHORIZED_KEYS_FILE})")
        print("targets started by this user now serve the holder of that key (running ones within a second)")
        return 0
    pair = keys.load_client_keypair()
    print(f"public key:   {pair.public}")
    print(f"fingerprint:  {keys.fingerprint(pair.public)}")
    print(f"config dir:   {keys.config_dir()}")
    authorized = sorted(keys.authorized_keys())
    print(f"authorized keys ({len(authorized)}):")
    for key in authorized:
        mark = "  (this key)" if key == pair.public else ""
        print(f"  {keys.fingerprint(key)}  {key}{mark}")
    print("to let this key attach to another user's or host's targets, run there:")
    print(f"  framebridge keys --authorize '{pair.public}'")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    """``framebridge attach [PID]``: a console in the paused frame."""
    from .console import run_console
    from .discovery import attach

    session = attach(args.pid)
    try:
        return run_console(session, kind=args.console, wait=args.wait)
    finally:
        session.close()


def cmd_demo(args: argparse.Namespace) -> int:
    """``framebridge demo``."""
    from .demo import run_demo

    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
