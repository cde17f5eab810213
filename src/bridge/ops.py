"""Registry of the operations a target serves, and the small types they share.

Two kinds of operation:

* **server ops** run on the server thread and must be quick (hello, threads, breakpoints).
* **frame ops** run on a paused thread, against that thread's own frames (eval, set, ...).

Modules register handlers with :func:`server_op` / :func:`frame_op`, and every such module
is listed in :data:`OP_MODULES` (importing it is what registers its ops); the server routes
by name, so a feature lives in its own module without touching the routing code.

A handler sees its op's ``args`` and value frames only: the transport fields of a request
(pause id, releases, bulk) are dealt with before it runs (dispatch.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, TypeVar

T = TypeVar("T")


@dataclass
class Reply:
    """What a handler returns when a JSON ``result`` is not all: the value ``frames`` too
    (encoded by a value codec: ``refs.encode`` or ``wire.dump_value``)."""

    result: Any = None
    frames: Optional[List[Any]] = None


class OpError(Exception):
    """An error a handler raises on purpose; ``kind`` becomes the reply's error type.

    Kinds the client maps to its own exceptions: ``NotPaused``, ``BadRequest``,
    ``WriteBackConflict``, ``FrameWriteError``, ``Unsupported``, ``PatchError``, ``JumpError``.
    """

    def __init__(self, kind: str, message: str, data: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.kind = kind
        #: Extra JSON fields for the reply's error object (e.g. ``names`` of a conflict).
        self.data = dict(data or {})


class NewLiveProcess(BaseException):
    """Raised by a frame op in a new process that carries the job on (a checkpoint's live
    process, or one a rewind started: bridge/checkpoint_ops.py). The pause loop
    (pause.serve) lets go of the parent's sockets without touching them and serves the
    same frames again, on a server of this process's own, as a pause with ``reason`` and
    ``info``. A BaseException, so that no ``except Exception`` on the way takes it for an error."""

    def __init__(self, reason: str, info: Dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = dict(info)


def bad_request(message: str) -> OpError:
    """An OpError for malformed arguments."""
    return OpError("BadRequest", message)


def arg(args: Dict[str, Any], name: str, kind: Type[T], default: Any = ...) -> T:
    """Fetch ``args[name]`` checked against ``kind``; BadRequest names what is wrong."""
    value = args.get(name)
    if type(value) is kind:  # the common case, first: this runs several times per request
        return value  # type: ignore[return-value]
    if value is None:
        if default is ...:
            raise bad_request(f"missing argument {name!r}")
        return default
    ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise bad_request(f"argument {name!r} must be {kind.__name__}, not {type(value).__name__}")
    return value  # type: ignore[return-value]


def str_list(args: Dict[str, Any], name: str, default: Any = ...) -> List[str]:
    """Fetch a list of strings argument."""
    value = arg(args, name, list, default)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise bad_request(f"argument {name!r} must be a list of strings")
    return value


# frame op: handler(pause, args, value_frames) -> Reply | JSON
FrameOpHandler = Callable[[Any, Dict[str, Any], Sequence[Any]], Any]
# server op: handler(server, args, value_frames, client_identity) -> Reply | JSON
ServerOpHandler = Callable[[Any, Dict[str, Any], Sequence[Any], bytes], Any]

FRAME_OPS: Dict[str, FrameOpHandler] = {}
SERVER_OPS: Dict[str, ServerOpHandler] = {}
#: Frame ops after which the paused thread resumes, mapped to the resume action.
RESUME_OPS: Dict[str, str] = {"cont": "continue", "step": "step", "next": "next", "step_out": "step_out"}


def frame_op(name: str) -> Callable[[FrameOpHandler], FrameOpHandler]:
    """Register a handler that runs on the paused thread: ``handler(pause, args, values)``."""

    def register(fn: FrameOpHandler) -> FrameOpHandler:
        FRAME_OPS[name] = fn
        return fn

    return register


def server_op(name: str) -> Callable[[ServerOpHandler], ServerOpHandler]:
    """Register a handler that runs on the server thread: ``handler(server, args, values, identity)``."""

    def register(fn: ServerOpHandler) -> ServerOpHandler:
        SERVER_OPS[name] = fn
        return fn

    return register


#: Modules whose import registers ops. Imported once, when the server starts.
OP_MODULES = (
    "bridge.server_ops",  # hello, subscribe, unsubscribe, status, threads, bulk_hello
    "bridge.frame_ops",   # stack, locals, eval, exec, get, set, resume ops
    "bridge.debug_ops",   # breakpoints, pause on demand, watches
    "bridge.mount_ops",   # jump_context snapshots and write-back, live references
    "bridge.playground_ops",  # %%playground: run code in a fork() of the paused process
    "bridge.source_ops",  # the DebugPanel's source view: a frame's source from linecache
    "bridge.inspect_ops",  # the DebugPanel's inspector: bounded previews of values
    "bridge.output_ops",  # the DebugPanel's job output view: the tail of what the job printed
    "bridge.outcomes",    # outcome: what became of a request whose reply was lost
    "bridge.patch_ops",  # editing running code: patch, unpatch, patches, jump
    "bridge.checkpoint_ops",  # checkpoints: take, list, drop, rewind (bridge/checkpoints/)
)


def load_all() -> None:
    """Import every op module so its handlers are registered."""
    import importlib

    for name in OP_MODULES:
        importlib.import_module(name)
