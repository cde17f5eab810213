"""Live references: notebook-side proxies for objects that stay in the target.

A value the target cannot (or should not) copy -- an open file, a socket, a lock, a
generator, an object of a class from the target's ``__main__``, or anything over the
mount's size limit -- arrives as a :class:`LiveRef`. Operations on it run *in the target*,
on the paused thread, one request each (rpyc's netref, honestly):

* attribute get / set / delete, method calls, ``repr``, ``str``, ``len``, iteration,
  indexing, ``in``, comparison and arithmetic operators, ``with``, calling;
* results come back by value when they can be copied, else as new live references;
* special methods are defined on the class (``__getattr__`` never sees them); unknown
  dunders and IPython's display probes (``_repr_*_``, ``_ipython_*``) fail locally,
  without a round trip;
* one proxy per remote object (a WeakValueDictionary keyed by ref id), so ``is`` holds;
* when a proxy dies its handle is released *in a batch with the next request* that goes
  through this module (never from ``__del__``/GC: that may run on any thread, and ZeroMQ
  sockets are not thread-safe);
* every remote call has a timeout (the session's, or :data:`DEFAULT_TIMEOUT`); a blocking
  ``lock.acquire()`` is bounded by it on the target side too.

What a proxy is not: ``type(p)`` is LiveRef and ``isinstance(p, io.IOBase)`` is False;
it works only while a thread of the target is paused; and what is done through it is done
in the target at once -- discarding a mount cannot undo it.
"""

from __future__ import annotations

import builtins
import importlib
import io
import pickle
import threading
import types
import weakref
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

from bridge import wire
from bridge.protocol import FORWARDED_SPECIALS

from .errors import BridgeError, ProtocolError, RemoteError, ValueDumpError, ValueLoadError, WriteBackConflict

#: Seconds a remote call through a proxy may take (capped by the session's timeout).
DEFAULT_TIMEOUT = 30.0

#: Special methods a proxy forwards to the target (bridge/mount_ops.py SPECIALS runs them).
FORWARDED = FORWARDED_SPECIALS


def _answered(exc: BaseException) -> bool:
    """Whether ``exc`` came from a reply of the target to a request it accepted."""
    if isinstance(exc, RemoteError):
        return not isinstance(exc, ProtocolError)  # a request refused unread applied nothing
    return isinstance(exc, WriteBackConflict)


class FrameRequester(Protocol):
    """What a RefRegistry needs of its session (client.session.Session has it)."""

    timeout: float

    def frame_request(self, op: str, args: Optional[Dict[str, Any]] = None, *, at: Any = None,
                      frames: Optional[List[Any]] = None, value: Any = ..., timeout: Optional[float] = None,
                      release: Optional[List[List[int]]] = None) -> Tuple[Any, List[Any]]:
        ...


class RefRegistry:
    """One session's proxies: one per ref id, plus the handles waiting to be released."""

    def __init__(self, session: FrameRequester) -> None:
        self.session = session
        self._proxies: "weakref.WeakValueDictionary[int, LiveRef]" = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self._pending: List[Tuple[int, List[int]]] = []  # (ref, its count cell)

    def proxy(self, ref: int, type_name: str) -> "LiveRef":
        """The proxy for ``ref``; counts one more handle the target sent."""
        with self._lock:
            existing = self._proxies.get(ref)
            if existing is not None:
                existing._fb_count[0] += 1
                return existing
            p = LiveRef._fb_new(self, ref, type_name)
            self._proxies[ref] = p
        # The finalizer only appends to a list (atomic under the GIL): safe on any thread.
        weakref.finalize(p, self._pending.append, (ref, p._fb_count))
        return p

    def take_releases(self) -> List[List[int]]:
        """Handles dropped since the last call, as ``[[ref, count], ...]`` for a request."""
        out = []
        while self._pending:
            try:
                ref, cell = self._pending.pop()
            except IndexError:
                break
            out.append([ref, cell[0]])
        return out

    def request(self, op: str, args: Dict[str, Any], frames: Optional[List[Any]] = None, *,
                at: Any = None, timeout: Optional[float] = None) -> Tuple[Any, List[Any]]:
        """A frame op on the session's selected frame (or ``at``, a FrameRef), carrying
        the pending releases. ``timeout`` None: the session's."""
        releases = self.take_releases()
        try:
            return self.session.frame_request(op, args, at=at, frames=frames, timeout=timeout, release=releases)
        except BaseException as exc:
            # The target applies a request's releases when it accepts it, whatever the op's
            # outcome: an answer (an error included) means they were delivered.
            if not _answered(exc):
                self.give_back(releases)
            raise

    def give_back(self, releases: List[List[int]]) -> None:
        """Releases that a request did not deliver: they go with the next one."""
        self._pending.extend((r, [n]) for r, n in releases)

    def release_all(self) -> None:
        """Give back every handle this session holds (on close): the target drops its
        references, so objects the notebook was looking at can be freed."""
        with self._lock:
            for ref, proxy in list(self._proxies.items()):
                count = proxy._fb_count
                if count[0]:
                    self._pending.append((ref, [count[0]]))
                    count[0] = 0  # its finalizer will then release nothing twice
            self._proxies.clear()
        self.flush()

    @property
    def pending(self) -> bool:
        """Whether released handles wait to be sent."""
        return bool(self._pending)

    def flush(self) -> None:
        """Send pending releases now (a no-op when there are none)."""
        if self._pending:
            self.request("ref", {"action": "release"}, timeout=self.timeout())

    def timeout(self) -> float:
        return min(DEFAULT_TIMEOUT, getattr(self.session, "timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)

    def __len__(self) -> int:
        return len(self._proxies)


# --- the codec ---------------------------------------------------------------------------------


class NeedsLive(ValueLoadError):
    """A value names something the notebook cannot resolve (the target's ``__main__``)."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, buffers: Sequence[Any], registry: RefRegistry) -> None:
        super().__init__(file, buffers=buffers)
        self._registry = registry

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "ref":
            return self._registry.proxy(int(pid[1]), str(pid[2]) if len(pid) > 2 else "object")
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "module":
            try:
                return importlib.import_module(pid[1])
            except ImportError as exc:
                raise NeedsLive(f"module {pid[1]} is not importable in the notebook: {exc}") from None
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":  # the target's __main__ is not ours: same name, other object
            raise NeedsLive(f"{name} is defined in the target's __main__")
        return super().find_class(module, name)


#: The unpickler of values from the target (client/mount_graph.py shares one across a mount's values).
Unpickler = _Unpickler


def load(registry: RefRegistry, frames: Sequence[Any]) -> Any:
    """Unpickle value frames from the target; live references become proxies of ``registry``.

    A value that cannot be rebuilt here (a class from a module the notebook lacks)
    raises ValueLoadError (NeedsLive for the target's ``__main__``), the cause attached.
    """
    if not frames:
        raise ProtocolError("ProtocolError", "a value needs at least one frame")
    stream, *buffers = frames
    try:
        return _Unpickler(io.BytesIO(_buf(stream)), [_buf(b) for b in buffers], registry).load()
    except BridgeError:
        raise
    except Exception as exc:
        raise ValueLoadError(f"a value from the target cannot be rebuilt here ({type(exc).__name__}: {exc}); "
                             "ask for it live, or install what it needs") from exc


def _buf(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


def persistent_id(obj: Any) -> Any:
    """How a value for the target names a live reference or a module (None: pickle it)."""
    return _persistent_id(obj)


def _persistent_id(obj: Any) -> Any:
    if type(obj) is LiveRef:  # type(), not isinstance(): never ask a proxy anything
        return ("ref", object.__getattribute__(obj, "_fb_ref"))
    if isinstance(obj, types.ModuleType):
        return ("module", obj.__name__)
    return None


class _PlainPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return _persistent_id(obj)


def _cloud_pickler() -> Optional[type]:
    try:
        import cloudpickle
    except ImportError:
        return None

    class _CloudPickler(cloudpickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return _persistent_id(obj)

    return _CloudPickler


_CLOUD = _cloud_pickler()


def dump(value: Any) -> wire.Frames:
    """Pickle a value for the target: proxies go back as their refs, modules by name, and
    functions and classes defined in the notebook by value (cloudpickle, when installed;
    the target then needs cloudpickle too, and says so if it lacks it). ValueDumpError
    (a TypeError) if it cannot be pickled."""
    try:
        return wire.dump_value(value, pickler=_CLOUD or _PlainPickler)
    except Exception as exc:
        raise ValueDumpError(f"cannot send the value to the target: {type(exc).__name__}: {exc}") from exc


def fingerprint_frames(value: Any) -> Optional[wire.Frames]:
    """This process's pickle of ``value`` for change detection (None if it cannot be pickled)."""
    try:
        return wire.dump_value(value, pickler=_PlainPickler)
    except Exception:
        pass
    if _CLOUD is not None:  # lambdas, local classes: only cloudpickle can
        try:
            return wire.dump_value(value, pickler=_CLOUD)
        except Exception:
            pass
    return None


# --- the proxy ---------------------------------------------------------------------------------

_LOCAL_PROBES = ("_repr_", "_ipython_")


def _translate(exc: RemoteError) -> BaseException:
    """A builtin exception raised in the target becomes the same builtin here (hasattr,
    iteration and indexing protocols depend on it), chained to the RemoteError."""
    builtin = getattr(builtins, exc.remote_type, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin is not Exception:
        try:
            new = builtin(exc.remote_message)
        except Exception:
            return exc
        new.__cause__ = exc
        return new
    return exc


class LiveRef:
    """A live reference to an object in the target process. See the module docstring."""

    __slots__ = ("_fb_registry", "_fb_ref", "_fb_type", "_fb_count", "__weakref__")

    @classmethod
    def _fb_new(cls, registry: RefRegistry, ref: int, type_name: str) -> "LiveRef":
        self = object.__new__(cls)
        object.__setattr__(self, "_fb_registry", registry)
        object.__setattr__(self, "_fb_ref", ref)
        object.__setattr__(self, "_fb_type", type_name)
        object.__setattr__(self, "_fb_count", [1])
        return self

    def _fb_call(self, action: str, name: str = "", args: Tuple[Any, ...] = (),
                 kwargs: Optional[Dict[str, Any]] = None) -> Any:
        registry: RefRegistry = object.__getattribute__(self, "_fb_registry")
        req: Dict[str, Any] = {"action": action, "ref": object.__getattribute__(self, "_fb_ref"), "name": name,
                               # bound for a blocking lock acquire in the target: below ours
                               "timeout": registry.timeout() * 0.8}
        frames = dump((tuple(args), dict(kwargs or {}))) if (args or kwargs) else None
        try:
            _, values = registry.request("ref", req, frames, timeout=registry.timeout())
        except RemoteError as exc:
            raise _translate(exc) from None
        return load(registry, values)

    # attributes
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_fb_") or name.startswith(_LOCAL_PROBES) or (
            name.startswith("__") and name.endswith("__")
        ):
            # Display and protocol probes are answered here: no round trip per display.
            raise AttributeError(f"{name} (not forwarded to the target by a live reference)")
        return self._fb_call("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._fb_call("setattr", name, (value,))

    def __delattr__(self, name: str) -> None:
        self._fb_call("delattr", name)

    def __dir__(self) -> List[str]:
        try:
            return list(self._fb_call("special", "__dir__"))
        except Exception:
            return []

    def __repr__(self) -> str:
        try:
            text = self._fb_call("special", "__repr__")
        except Exception as exc:  # repr must not raise: say what we know
            return f"<live {object.__getattribute__(self, '_fb_type')} (repr failed: {type(exc).__name__})>"
        return f"<live {text}>" if isinstance(text, str) else repr(text)

    def __enter__(self) -> Any:
        return self._fb_call("special", "__enter__")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            dump((exc_type, exc))
            args = (exc_type, exc, None)  # a traceback cannot travel
        except Exception:
            args = (RuntimeError, RuntimeError(f"{exc_type.__name__}: {exc}"), None) if exc_type else (None, None, None)
        return self._fb_call("special", "__exit__", args)

    def __reduce__(self) -> Any:
        raise TypeError("a live reference only travels to its own target (through framebridge)")


def _forward(name: str) -> Any:
    def method(self: LiveRef, *args: Any, **kwargs: Any) -> Any:
        return self._fb_call("special", name, args, kwargs)

    method.__name__ = name
    method.__qualname__ = f"LiveRef.{name}"
    return method


for _name in FORWARDED:
    setattr(LiveRef, _name, _forward(_name))


def is_live(value: Any) -> bool:
    """Whether ``value`` is a live reference to an object in a target."""
    return type(value) is LiveRef


def type_of(value: LiveRef) -> str:
    """The target-side type name of a live reference."""
    return object.__getattribute__(value, "_fb_type")
