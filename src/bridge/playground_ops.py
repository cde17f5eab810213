"""The playground: run code against a ``fork()`` of the paused process, then throw it away.

``%%playground`` sends the ``playground`` frame op. The paused thread forks; the child is a
copy-on-write image of the whole process in which the paused thread is the only thread.
The child runs the code in its copy of the selected frame, sends the output and the value
of the last expression back through a pipe, and ends with ``os._exit``. Nothing the code
does -- however deep it mutates, deletes or rebinds -- reaches the parent's memory.

Why fork from the *paused thread* (not from the server thread, which also works):

* ``logging`` takes its module lock in an at-fork hook. If the paused thread holds that
  lock (paused inside a handler, or by a signal in the middle of a log call), a fork from
  any other thread hangs forever. The lock is an RLock, so the paused thread
  itself can take it again.
* The same holds for import locks (module locks are re-entrant for their owner): a child
  forked from the thread that is paused inside an import can still import.
* In the child, the thread that runs the code is the frame's own thread, with its real
  stack, exactly as for ``exec``.
* The server thread stays free to serve other clients while the child runs.

The hazards that remain are handled here: a wall-clock limit with SIGKILL for a child
that hangs (a lock held by some *other* thread at fork time), ``os._exit`` in
``try/finally`` so the child never runs the parent's atexit handlers or flushes its
buffers, a pipe instead of the parent's ZeroMQ sockets, no debugger pauses in the child,
the 3.12+ DeprecationWarning about forking a multi-threaded process silenced for the
``fork`` call only, and a target that ignores SIGCHLD or reaps every child itself (the
child may be gone before ``waitpid`` looks: :class:`_Child`). Where ``os.fork`` does not
exist, the op says so.

Open files and sockets are shared with the child (same descriptors, same file offsets):
writing to them from a playground is visible outside it. The docs say so.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
import warnings
from types import FrameType
from typing import Any, Dict, Optional, Sequence, Tuple

from . import frames as frame_access
from .ops import OpError, Reply, arg, frame_op

#: Wall-clock limit of one playground run unless the request says otherwise.
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0
#: Output kept from a child (bytes of text); the rest is cut with a note.
MAX_OUTPUT_CHARS = 1_000_000
#: Exit status of a child that finished normally (any other status means it broke).
_CHILD_OK = 0
#: The wait status of a child someone else reaped (no real wait status is negative).
STATUS_UNKNOWN = -1
_LEN = struct.Struct("!Q")
# The child runs user code that may replace anything (``json.dumps = None``, ``del os.write``):
# the functions it needs afterwards are bound here, at import time, once and for all.
_json_dumps = json.dumps
_pickle_dumps = pickle.dumps
_os_write = os.write
_os_exit = os._exit


def fork_available() -> bool:
    """Whether this platform can fork (POSIX); Windows cannot."""
    return hasattr(os, "fork")


@frame_op("playground")
def _op_playground(pause: Any, args: Dict[str, Any], values: Sequence[Any]) -> Reply:
    frame = pause.frame(args)
    code = arg(args, "code", str)
    timeout = float(arg(args, "timeout", float, DEFAULT_TIMEOUT_S))
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise OpError("BadRequest", f"timeout must be in (0, {MAX_TIMEOUT_S:g}] seconds, not {timeout:g}")
    try:
        ast.parse(code, "<playground>", "exec")
    except SyntaxError as exc:  # say so before paying for a fork
        raise OpError("SyntaxError", "".join(traceback.format_exception_only(SyntaxError, exc)).strip()) from None
    envelope, value_pickle = run_forked(frame, code, timeout)
    frames = [value_pickle] if value_pickle else None
    return Reply(result=envelope, frames=frames)


def run_forked(frame: FrameType, code: str, timeout: float) -> Tuple[Dict[str, Any], bytes]:
    """Run ``code`` in ``frame`` inside a forked child; return (envelope, value pickle).

    The envelope is JSON: ``output``, ``error`` (type, message, traceback) or None,
    ``has_value``, ``value_repr``, ``value_error`` (why the value could not be sent),
    ``pid``, ``elapsed`` and ``fork_ms``. The parent never unpickles what the child sends;
    the value pickle is handed to the client as it is.
    """
    if not fork_available():
        raise OpError("Unsupported", f"the playground needs os.fork(), which {sys.platform} does not have")
    read_fd, write_fd = os.pipe()
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks in
            # the child." We know; the child only runs the playground code under a deadline.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise OpError("PlaygroundError", f"fork() failed: {exc}") from None
    if pid == 0:  # the child: never returns
        _child_main(frame, code, read_fd, write_fd)
    fork_ms = (time.perf_counter() - started) * 1000
    child = _Child(pid)
    os.close(write_fd)
    try:
        try:
            payload, complete = _read_payload(read_fd, started + timeout)
        finally:
            os.close(read_fd)
        # Past the deadline the child is killed at once; after a result or an EOF it is
        # exiting (its pipe closes a moment before it can be reaped): give it time.
        timed_out = not complete and time.perf_counter() >= started + timeout
        status = child.reap(wait_s=0.0 if timed_out else 5.0)
    finally:
        child.close()
    elapsed = time.perf_counter() - started
    if not complete:
        if status is None:
            raise OpError("PlaygroundTimeout",
                          f"the playground did not finish within {timeout:g}s; its process {pid} was killed "
                          "(nothing it did reached the target)")
        raise OpError("PlaygroundError", f"the playground process {pid} {_describe_status(status)} "
                                         "before sending a result (nothing it did reached the target)")
    header_len = _LEN.unpack_from(payload)[0]
    envelope = json.loads(payload[_LEN.size:_LEN.size + header_len].decode("utf-8"))
    value_pickle = bytes(payload[2 * _LEN.size + header_len:])
    envelope.update(pid=pid, elapsed=elapsed, fork_ms=fork_ms)
    return envelope, value_pickle


def _read_payload(fd: int, deadline: float) -> Tuple[bytearray, bool]:
    """Read the child's length-prefixed message until complete, EOF or the deadline."""
    data = bytearray()
    while True:
        if _complete(data):
            return data[: _total_len(data)], True
        left = deadline - time.perf_counter()
        if left <= 0:
            return data, False
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:  # EOF: the child is gone
            if _complete(data):
                return data[: _total_len(data)], True
            return data, False
        data += chunk


# Message layout: [len(header)][header JSON][len(value)][value pickle]. Helpers read it.
def _total_len(data: bytearray) -> int:
    header_len = _LEN.unpack_from(data)[0]
    value_len = _LEN.unpack_from(data, _LEN.size + header_len)[0]
    return 2 * _LEN.size + header_len + value_len


def _complete(data: bytearray) -> bool:
    if len(data) < _LEN.size:
        return False
    header_len = _LEN.unpack_from(data)[0]
    if len(data) < 2 * _LEN.size + header_len:
        return False
    return len(data) >= _total_len(data)


class _Child:
    """The forked child, as the parent sees it: reap it, or kill it past its deadline.

    Many daemons ignore SIGCHLD (the kernel then reaps a child the moment it exits) or reap
    every child in a SIGCHLD handler of their own; either way ``waitpid`` may find the child
    gone (``ChildProcessError``) and its exit status unknown. A child that is gone may have
    had its pid reused, so where the platform has them (Linux 5.3+) the child is killed
    through a pidfd, which names this process and no later one with the same pid.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd: Optional[int] = None
        opener = getattr(os, "pidfd_open", None)
        if opener is not None:
            try:
                self.pidfd = opener(pid)
            except OSError:  # an old kernel, or the child is gone already
                pass

    def reap(self, wait_s: float) -> Optional[int]:
        """Wait up to ``wait_s`` for the child, then SIGKILL it; return its wait status,
        :data:`STATUS_UNKNOWN` if someone else reaped it, or None if it was killed here."""
        deadline = time.perf_counter() + wait_s
        while True:
            status = self._poll()
            if status is not None:
                return status
            if time.perf_counter() >= deadline:
                break
            time.sleep(0.005)  # a child that already sent everything exits within microseconds
        self._kill()
        # A SIGKILLed process is gone within milliseconds; bounded all the same (a child stuck
        # in the kernel must not hold up the paused thread, which has a client to answer).
        deadline = time.perf_counter() + 5.0
        while self._poll() is None and time.perf_counter() < deadline:
            time.sleep(0.005)
        return None

    def _poll(self) -> Optional[int]:
        """The child's wait status if it exited (reaping it), else None."""
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already, by the kernel or by the job's own handler
            return STATUS_UNKNOWN
        return status if done else None

    def _kill(self) -> None:
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            elif self._poll() is None:  # without a pidfd: only a child not reaped yet is surely ours
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Release the pidfd."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def _describe_status(status: int) -> str:
    if status == STATUS_UNKNOWN:
        return "ended (its exit status is unknown: the target reaps its children itself or ignores SIGCHLD)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


# --- the child ---------------------------------------------------------------------------


def _child_main(frame: FrameType, code: str, read_fd: int, write_fd: int) -> None:
    """Body of the forked child. Ends the process with os._exit, whatever happens."""
    status = 1
    try:
        os.close(read_fd)
        _isolate_child()
        message = _run_in_child(frame, code)
        _write_all(write_fd, message)
        status = _CHILD_OK
    except BaseException as exc:  # the child must never fall back into the parent's code
        try:  # say what broke, if the pipe is still usable
            envelope = {"error": {"type": "PlaygroundError", "message": f"the playground failed: {exc!r}",
                                  "traceback": ""}, "has_value": False, "output": ""}
            header = _json_dumps(envelope).encode("utf-8")
            _write_all(write_fd, _LEN.pack(len(header)) + header + _LEN.pack(0))
            status = _CHILD_OK
        except BaseException:
            pass
    finally:
        _os_exit(status)


def _isolate_child() -> None:
    """Cut the child off from the parent's terminal input and from the debugger."""
    # No tracing: a breakpoint hit in the child must not try to start a server there.
    sys.settrace(None)
    from . import pause

    def _no_pause(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("cannot pause inside a playground (it is a throw-away copy of the process)")

    pause.serve = _no_pause  # type: ignore[assignment]  # the child's copy only
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)


def _run_in_child(frame: FrameType, code: str) -> bytes:
    """Run ``code`` in ``frame`` capturing output; return the message for the parent."""
    body, last_expr = split_last_expression(code)
    out = io.StringIO()
    # Output written to the file descriptors (C code, subprocesses) goes to a temp file,
    # not into the job's log.
    fd_capture = _capture_fds()
    sys.stdout = sys.stderr = out  # the child has one thread: a plain swap is safe
    envelope: Dict[str, Any] = {"error": None, "has_value": False, "value_repr": None, "value_error": None}
    value_pickle = b""
    try:
        if body is not None:
            frame_access.run_code(frame, compile(body, "<playground>", "exec"), eval_mode=False)
        if last_expr is not None:
            value = frame_access.run_code(frame, compile(last_expr, "<playground>", "eval"), eval_mode=True)
            if value is not None:
                envelope["has_value"] = True
                envelope["value_repr"] = _safe_repr(value)
                try:
                    value_pickle = _pickle_dumps(value, protocol=5)
                except Exception as exc:
                    envelope["value_error"] = f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # user code raised (even SystemExit): report it
        envelope["error"] = {
            "type": type(exc).__name__,
            "message": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
            "traceback": _user_traceback(exc),
        }
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    text = out.getvalue() + _read_fd_capture(fd_capture)
    if len(text) > MAX_OUTPUT_CHARS:
        text = text[:MAX_OUTPUT_CHARS] + f"\n[... output cut at {MAX_OUTPUT_CHARS} characters]\n"
    envelope["output"] = text
    header = _json_dumps(envelope).encode("utf-8")
    return _LEN.pack(len(header)) + header + _LEN.pack(len(value_pickle)) + value_pickle


def _capture_fds() -> Optional[int]:
    try:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="framebridge-playground-")
        os.unlink(path)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        return fd
    except OSError:
        return None


def _read_fd_capture(fd: Optional[int]) -> str:
    if fd is None:
        return ""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, MAX_OUTPUT_CHARS).decode("utf-8", "replace")
    except OSError:
        return ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = _os_write(fd, view)
        view = view[n:]


def _safe_repr(value: Any, limit: int = 10_000) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    here = os.path.dirname(os.path.abspath(__file__))
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == here:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


# --- shared with the client: a cell's statements and its last expression -----------------------


def split_last_expression(source: str) -> Tuple[Optional[str], Optional[str]]:
    """Split a cell into (statements, last expression), the way IPython shows a cell's value.

    ``"x = 1\\nx + 1"`` -> ``("x = 1", "x + 1")``; a cell that does not end with an
    expression -> ``(source, None)``; a cell that is one expression -> ``(None, expr)``.
    Raises SyntaxError for code that does not parse.
    """
    tree = ast.parse(source, "<cell>", "exec")
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return (source if tree.body else None), None
    last = tree.body[-1]
    expr = ast.get_source_segment(source, last.value)
    if expr is None:  # no position info (should not happen): fall back to unparsing
        expr = ast.unparse(last.value)
    if len(tree.body) == 1:
        return None, _one_line(expr)
    lines = source.splitlines(keepends=True)
    if last.col_offset == 0:
        body = "".join(lines[: last.lineno - 1])
    else:  # `a = 1; a` on one line: unparse the statements instead of slicing text
        body = ast.unparse(ast.Module(body=tree.body[:-1], type_ignores=[]))
    return body, _one_line(expr)


def _one_line(expr: str) -> str:
    # A multi-line expression segment keeps its own line breaks; parenthesise so that
    # compile(..., "eval") accepts it whatever its indentation.
    return f"(\n{expr}\n)" if "\n" in expr else expr
