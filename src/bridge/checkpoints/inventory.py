"""What a checkpoint holds and what it cannot rewind, read from /proc.

A checkpoint is a copy-on-write image of memory. Everything outside that memory goes on
in every timeline: bytes written to files and sockets (and the shared file offsets), the
peers of open connections, the job's child processes (they stay children of the keeper),
the process's other threads (fork copies only the calling one), GPU state (drivers do not
survive fork). The keeper lists them right after the fork, from its own /proc entry:
its file descriptors and threads are the process's at the checkpoint.

Memory is reported from ``/proc/<keeper>/smaps_rollup``: ``private`` (Private_Clean +
Private_Dirty) is what the snapshot costs, the pages only the keeper still maps. Right
after the fork it is close to nothing; it grows by every page the live job writes
(copy-on-write gives the writer the copy and leaves the keeper the original). ``pss``
splits shared pages among their sharers, so it reports half of an untouched 1 GiB array
for a snapshot that costs nothing: it is given for context, not as the cost.
"""

from __future__ import annotations

import os
import socket
import stat
from typing import Any, Dict, Iterable, List, Optional, Set

from . import sysapi

#: Entries kept per list (descriptors, children, threads); the rest are counted.
MAX_ITEMS = 256
_GPU_MARKERS = ("libcuda.so", "libcudart", "libnvidia-", "libcublas", "libcudnn", "libnccl", "libtorch_cuda",
                "libamdhip64", "libhsa-runtime64", "librocm", "/dev/nvidia", "/dev/kfd", "/dev/dri/")
_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
               "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
               "0B": "CLOSING"}


def memory(pid: int) -> Optional[Dict[str, int]]:
    """Bytes of ``pid``: private (the snapshot's cost), pss, rss, swap; None if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = {}
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except (OSError, ValueError):
        return None
    return {
        "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
        "pss": fields.get("Pss", 0),
        "rss": fields.get("Rss", 0),
        "swap": fields.get("Swap", 0),
    }


def gpu_libraries(pid: int) -> List[str]:
    """GPU driver and runtime libraries (and GPU device files) mapped by ``pid``."""
    found: Set[str] = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)  # address perms offset dev inode [path]
                path = parts[5].strip() if len(parts) > 5 else ""
                if path and any(marker in path for marker in _GPU_MARKERS):
                    found.add(os.path.basename(path) if not path.startswith("/dev/") else path)
    except OSError:
        pass
    return sorted(found)


def native_threads(pid: int, exclude: Iterable[int] = ()) -> List[str]:
    """The name (comm) of every OS thread of ``pid``, Python's and C libraries' alike,
    but not those whose thread ids are in ``exclude``."""
    names = []
    skip = {str(tid) for tid in exclude}
    try:
        tids = sorted((t for t in os.listdir(f"/proc/{pid}/task") if t not in skip), key=int)
    except OSError:
        return names
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def children(pid: int, exclude: Iterable[int] = ()) -> List[Dict[str, Any]]:
    """Child processes of ``pid`` (pid and command line), but not those in ``exclude``."""
    skip = set(exclude)
    out = []
    for child in sorted(set(sysapi.child_pids(pid)) - skip):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        out.append({"pid": child, "cmdline": cmdline})
    return out


def open_descriptors(pid: int, exclude: Iterable[int] = (), *, sockets_only: bool = False) -> List[Dict[str, Any]]:
    """Every open file descriptor of ``pid`` except ``exclude``: files with path and offset,
    sockets with their addresses and peer, pipes, devices and the rest by kind; only the
    sockets with ``sockets_only`` (the others cost a /proc read or two each)."""
    skip = set(exclude)
    sockets: Optional[Dict[int, Dict[str, Any]]] = None
    out = []
    base = f"/proc/{pid}/fd"
    try:
        fds = sorted(int(name) for name in os.listdir(base))
    except OSError:
        return out
    for fd in fds:
        if fd in skip:
            continue
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:
            continue  # closed while we looked (the fd listdir itself used)
        if target == base or (sockets_only and not target.startswith("socket:[")):
            continue
        item: Dict[str, Any] = {"fd": fd}
        if target.startswith("socket:["):
            inode = int(target[8:-1])
            found = _socket_here(fd) if pid == os.getpid() else None
            if found is None:
                if sockets is None:
                    sockets = _socket_table()
                found = sockets.get(inode, {"proto": "unknown", "inode": inode})
            item.update(kind="socket", **found)
        elif target.startswith("pipe:["):
            item.update(kind="pipe", name=target)
        elif target.startswith("anon_inode:"):
            item.update(kind=target[len("anon_inode:"):].strip("[]"))
        elif target.startswith("/dev/"):
            item.update(kind="device", path=target)
        else:
            info = _fdinfo(pid, fd)
            item.update(kind="file", path=target, offset=info.get("pos", 0), mode=_mode(info.get("flags", 0)))
            try:
                if stat.S_ISDIR(os.stat(f"{base}/{fd}").st_mode):
                    item["kind"] = "directory"
                    item.pop("offset")
            except OSError:
                pass
        out.append(item)
    return out


def _fdinfo(pid: int, fd: int) -> Dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("pos", "flags"):
                    out[key] = int(value.strip(), 8 if key == "flags" else 10)
    except (OSError, ValueError):
        pass
    return out


def _mode(flags: int) -> str:
    access = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}.get(flags & 3, "?")
    return access + ("+append" if flags & os.O_APPEND else "")


def _socket_here(fd: int) -> Optional[Dict[str, Any]]:
    """Addresses of socket ``fd`` of this very process, asked of the socket itself: the
    /proc/net tables list every socket of the network namespace, and reading them takes
    tens of milliseconds on a busy host. None if the socket cannot say."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        family, kind = sock.family, sock.type
        if family == socket.AF_UNIX:
            name = sock.getsockname()
            return {"proto": "unix", "path": name if isinstance(name, str) else ""}
        if family not in (socket.AF_INET, socket.AF_INET6):
            return None
        proto = ("tcp" if kind == socket.SOCK_STREAM else "udp") + ("6" if family == socket.AF_INET6 else "")
        entry: Dict[str, Any] = {"proto": proto, "local": _format_address(sock.getsockname())}
        try:
            entry["peer"] = _format_address(sock.getpeername())
        except OSError:
            pass  # not connected
        if kind == socket.SOCK_STREAM and hasattr(socket, "TCP_INFO"):
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]  # tcpi_state comes first
            entry["state"] = _TCP_STATES.get(f"{state:02X}", str(state))
        return entry
    except OSError:
        return None
    finally:
        sock.detach()  # the descriptor is the job's: never closed here


def _format_address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _socket_table() -> Dict[int, Dict[str, Any]]:
    """inode -> addresses of the sockets in this network namespace (/proc/net)."""
    table: Dict[int, Dict[str, Any]] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    entry: Dict[str, Any] = {"proto": proto, "local": _address(parts[1])}
                    if parts[2].split(":")[1] != "0000":
                        entry["peer"] = _address(parts[2])
                    if proto.startswith("tcp"):
                        entry["state"] = _TCP_STATES.get(parts[3], parts[3])
                    table[int(parts[9])] = entry
        except (OSError, StopIteration, ValueError):
            continue
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 7:
                    table[int(parts[6])] = {"proto": "unix", "path": parts[7] if len(parts) > 7 else ""}
    except (OSError, StopIteration, ValueError):
        pass
    return table


def _address(text: str) -> str:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw[::-1])}:{int(port, 16)}"
    # IPv6: four 32-bit words, each in host (little-endian) byte order.
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{int(port, 16)}"


def collect(pid: int, *, exclude_fds: Iterable[int] = (), exclude_children: Iterable[int] = (),
            exclude_threads: Iterable[int] = ()) -> Dict[str, Any]:
    """The whole "cannot be rewound" list of ``pid`` (a keeper, right after its fork)."""
    fds = open_descriptors(pid, exclude_fds)
    kids = children(pid, exclude_children)
    threads = native_threads(pid, exclude_threads)
    return {
        "descriptors": fds[:MAX_ITEMS],
        "descriptors_not_listed": max(0, len(fds) - MAX_ITEMS),
        "children": kids[:MAX_ITEMS],
        "native_threads": threads[:MAX_ITEMS],
        "native_thread_count": len(threads),
        "gpu": gpu_libraries(pid),
    }
