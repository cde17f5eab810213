"""Errors the notebook side raises. Every one derives from :class:`BridgeError`.

Some also derive from the builtin exception they used to be (``MountStateError`` is a
``RuntimeError``, ``BadRequest`` a ``ValueError``...), so code that caught the builtin
keeps working. docs/errors.md lists which error kind of the target becomes which class.

* Connection and session: :class:`NoSession`, :class:`SessionLost`,
  :class:`AuthenticationError`, :class:`RequestTimeout`, :class:`PauseTimeout`,
  :class:`RemoteAttachError`, :class:`TransferError`.
* State of the target: :class:`NotPaused`, :class:`NoSuchFrame`, :class:`WriteBackConflict`.
* Checkpoints: :class:`CheckpointError`, :class:`ThreadsRunning`.
* The target answered with an error: :class:`RemoteError` (code run there raised; its
  type, message and traceback travel along) and one subclass per refusal kind.
* Values that cannot travel: :class:`ValueLoadError`, :class:`ValueDumpError`.
* Editing running code: :class:`PatchError`, :class:`JumpError`.
* Mounts: :class:`MountError` and its subclasses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

from bridge import remote_attach


class BridgeError(Exception):
    """Base class of every framebridge client error."""


# --- connection and session ---------------------------------------------------------------


class NoSession(BridgeError):
    """No attachable process matches (none running, or several and none was named)."""


class SessionLost(BridgeError):
    """The target process died or stopped answering."""


class AuthenticationError(BridgeError):
    """The CURVE handshake failed: our key is not authorized, or the server's key is wrong."""


class RequestTimeout(BridgeError, TimeoutError):
    """A request got no reply within its timeout (the target is alive but busy)."""


class PauseTimeout(BridgeError, TimeoutError):
    """``wait()`` saw no thread pause within its timeout (the target runs on)."""


class ReplyLost(BridgeError):
    """The connection dropped while a request was in flight (the target was stopped past
    the heartbeat timeout, the network hiccuped) and its reply cannot be recovered.

    ``ran`` says what the target knows: True (it ran; its reply was too big to keep, so
    ask for the result again), False (it never arrived: nothing ran) or None (the target
    cannot say: check the frame's state before running it again).
    """

    def __init__(self, message: str, ran: Optional[bool] = None) -> None:
        super().__init__(message)
        self.ran = ran


class ResourceLimit(BridgeError, OSError):
    """This process is too close to its open-file limit (``ulimit -n``) to open another
    connection; nothing was opened. Close sessions you no longer use, or raise the limit."""


class RemoteAttachError(BridgeError, remote_attach.RemoteAttachError):
    """``inject(pid)`` cannot make the process attachable; the message says what to do
    instead. Also the ``bridge.remote_attach`` error (a RuntimeError) it wraps, which is
    its ``__cause__``."""


# --- state of the target ------------------------------------------------------------------------


class NotPaused(BridgeError):
    """The operation needs a paused thread, and there is none (or it resumed meanwhile)."""


class NoSuchFrame(BridgeError, IndexError):
    """``select(i)``, ``up()`` or ``down()`` named a frame the paused stack does not have."""


class WriteBackConflict(BridgeError):
    """The frame's variables changed in the target since the mount; nothing was written."""

    def __init__(self, message: str, names: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.names = list(names or [])

    def _repr_html_(self) -> str:
        from .display import conflict_html

        return conflict_html(self)


# --- errors the target reports --------------------------------------------------------------------


class RemoteError(BridgeError):
    """The target answered with an error: code run there raised (``remote_type`` is the
    exception's type, ``remote_traceback`` where it raised), or, for a subclass, the target
    refused the request (``remote_type`` is then the refusal's kind)."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}" if not message.startswith(remote_type) else message)
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += "\n\nTraceback in the target process:\n" + self.remote_traceback.rstrip()
        return text


class BadRequest(RemoteError, ValueError):
    """The target refused the request's arguments (a frame index past the stack, a bad
    timeout, a thread that does not exist); nothing ran."""


class ProtocolError(RemoteError):
    """A message between this process and the target did not follow the spec
    (docs/protocol.md): the target could not read ours, or we could not read its reply."""


class Unsupported(RemoteError):
    """The target cannot do this on its platform or Python (the playground without
    ``fork()``, pausing a worker thread before 3.12)."""


class UnknownOp(Unsupported):
    """The target does not know the operation (an older framebridge), or a pause's lane
    was asked for an operation it does not serve."""


class FrameWriteError(RemoteError):
    """The frame could not be written as asked (deleting a local on 3.13+, a name that is
    not there); nothing was written."""


class StaleReference(RemoteError):
    """A live reference names an object the target no longer holds (released, or from
    another session)."""


class Unpicklable(RemoteError):
    """The target cannot pickle a value it was asked to send (ask for it live instead)."""


class TransferError(RemoteError):
    """A bulk transfer (shared memory or the data port, docs/protocol.md) failed, here or
    in the target; ``remote_type`` is ``"BulkError"``. A failure in this process has the
    ``bridge.bulk.BulkError`` as ``__cause__``."""


class BreakpointError(RemoteError, ValueError):
    """The target refused a breakpoint or watch (no such file, no code there, bad expression).

    Both a :class:`RemoteError` and a ``ValueError``, so either ``except`` catches it.
    """


class PatchError(RemoteError, ValueError):
    """A patch or unpatch was refused (a syntax error, a name the module does not have,
    a generator replaced by a plain function, closure variables that cannot be given):
    nothing was changed in the target. Also raised before anything is sent, for a
    notebook function whose source cannot be had (a lambda, a function made by exec)."""


class JumpError(RemoteError, ValueError):
    """``jump(line)`` was refused (pdb's rules, a line outside the function, a pause
    that cannot move its frame): the frame is where it was. When the target refused at
    the frame's next event, the frame is paused there (the message says where)."""


class CheckpointError(RemoteError):
    """A checkpoint could not be taken, rewound to or dropped (an unknown or dropped
    checkpoint, a keeper that is gone, a job that did not come back from a rewind);
    nothing in the job changed, unless the message says otherwise."""


class ThreadsRunning(CheckpointError):
    """``checkpoint()`` was refused: other Python threads run in the target, and a
    checkpoint (a ``fork()``) copies only the paused one. ``threads`` names them; stop
    them first, or pass ``force=True`` to checkpoint without them."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "",
                 threads: Optional[List[str]] = None) -> None:
        super().__init__(remote_type, message, remote_traceback)
        self.threads = list(threads or [])


class PlaygroundError(RemoteError):
    """The playground's copy of the process could not be made or died before it answered."""


class PlaygroundTimeout(PlaygroundError, TimeoutError):
    """The playground's copy ran past its timeout and was killed."""


# --- values ------------------------------------------------------------------------------------


class ValueLoadError(BridgeError):
    """A value the target sent cannot be rebuilt in the notebook (its class comes from a
    module the notebook cannot import); the unpickling error is the ``__cause__``."""


class ValueDumpError(BridgeError, TypeError):
    """A value cannot be pickled to send to the target; the pickling error is the ``__cause__``."""


# --- mounts ----------------------------------------------------------------------------------


class MountError(BridgeError):
    """A mount cannot do what was asked; nothing was written back."""


class MountStateError(MountError, RuntimeError):
    """A Mount used twice, or outside its ``with`` block."""


class WriteBackTooLarge(MountError, ValueError):
    """A write-back exceeds the message size limit and the session has no bulk path."""


class WriteBackUnpicklable(MountError, ValueDumpError):
    """Values to write back cannot be pickled; ``names`` says which."""

    def __init__(self, message: str, names: Optional[List[str]] = None) -> None:
        super().__init__(message)
        self.names = list(names or [])


class Unmountable(MountError, RemoteError):
    """Variables the notebook can take neither as copies nor as live references."""


# --- warnings ----------------------------------------------------------------------------------


class PausePending(BridgeError, UserWarning):
    """A warning: ``pause()`` was sent but the thread has not stopped yet (it is inside a
    long C call, such as ``time.sleep`` or a numpy operation); it stops when that call
    returns. A BridgeError too, for ``warnings.simplefilter("error")``."""


class NotDeleted(BridgeError, UserWarning):
    """A warning: a write-back deleted what it could, but names the block deleted are
    local variables of a running function, which this Python (3.12+) cannot delete; they
    keep their values in the target. Everything else was written."""


# --- the reply's error object -> an exception -------------------------------------------------

#: Error kinds the target sends on purpose (``OpError`` kinds, docs/errors.md) -> the
#: RemoteError subclass raised here. A kind not named here is the type of an exception
#: that code run in the target raised: a plain RemoteError.
REFUSALS: Dict[str, Type[RemoteError]] = {
    "BadRequest": BadRequest,
    "ProtocolError": ProtocolError,
    "Unsupported": Unsupported,
    "UnknownOp": UnknownOp,
    "FrameWriteError": FrameWriteError,
    "StaleReference": StaleReference,
    "Unpicklable": Unpicklable,
    "BulkError": TransferError,
    "PlaygroundError": PlaygroundError,
    "PlaygroundTimeout": PlaygroundTimeout,
    "PatchError": PatchError,
    "JumpError": JumpError,
    "CheckpointError": CheckpointError,
}


def error_from_reply(error: Dict[str, Any]) -> BridgeError:
    """Turn a reply's ``error`` object into the matching client exception."""
    kind = str(error.get("type", "Error"))
    message = str(error.get("message", ""))
    tb = str(error.get("traceback", ""))
    if kind == "NotPaused":
        return NotPaused(message)
    if kind == "WriteBackConflict":
        return WriteBackConflict(message, error.get("names"))
    if kind == "Unauthorized":  # our key was revoked since the handshake (docs/security.md)
        return AuthenticationError(message)
    if kind == "ThreadsRunning":
        return ThreadsRunning(kind, message, tb, error.get("threads"))
    return REFUSALS.get(kind, RemoteError)(kind, message, tb)


def refine(exc: RemoteError, cls: Type[RemoteError]) -> RemoteError:
    """The same error as ``cls`` (an op that knows what its target's ``ValueError`` means)."""
    return cls(exc.remote_type, exc.remote_message, exc.remote_traceback)
