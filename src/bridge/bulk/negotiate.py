"""The per-session choice of a bulk mode, and the client's side of the bulk path.

After ``hello`` the client asks ``bulk_hello``; the target answers :func:`hello_reply`
(its host identity, the modes it can serve in order of preference, each mode's own offer
fields, its data port and upload key), and :meth:`BulkPeer.negotiate` picks the first
mode the client can use. The :class:`BulkPeer` then serves every request of the session:
it exports upload buffers (falling back to another mode when its own cannot export, and
saying so once) and opens data-port connections with the request's timeout.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

from .codec import MODES, TRANSFER_MODES, Export, export_with_fallback, total_bytes
from .dataport import data_server, open_download, upload_token
from .transfer import THRESHOLD, TIMEOUT_S, BulkError


class BulkFallbackWarning(RuntimeWarning):
    """The session's bulk mode could not be used for a value (a full /dev/shm); another
    mode carried it. Shown once per session."""


def host_identity() -> Dict[str, Any]:
    """What tells two processes they share a kernel: boot id, hostname, uid."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    return {"boot_id": boot_id, "hostname": socket.gethostname(), "uid": os.getuid()}


def hello_reply(host: str) -> Dict[str, Any]:
    """What the target tells a client that asks for the bulk path (server op ``bulk_hello``).

    Every mode is collected through the data port: without one, only ``curve`` is offered.
    """
    info: Dict[str, Any] = {"host": host_identity(), "modes": ["curve"], "threshold": THRESHOLD}
    try:
        server = data_server(host)
    except (OSError, BulkError):
        return info
    info["data_port"] = server.port
    info["upload_key"] = server.upload_key.hex()
    offered = []
    for name, mode in TRANSFER_MODES.items():
        fields = mode.offer()
        if fields is not None:
            offered.append(name)
            info.update(fields)
    info["modes"] = offered + ["curve"]
    return info


@dataclass
class BulkPeer:
    """One client session's bulk path: the mode chosen and where the data port is.

    ``stats`` counts what went which way (tests and benchmarks read it).
    """

    mode: str = "curve"
    data_address: Optional[Tuple[str, int]] = None
    threshold: int = THRESHOLD
    #: The target's key for upload tokens (dataport.upload_token); None: no uploads outside CURVE.
    upload_key: Optional[bytes] = field(default=None, repr=False)
    stats: Dict[str, int] = field(default_factory=lambda: {"shm": 0, "aes": 0, "bytes": 0, "uploads": 0})
    warned: bool = field(default=False, repr=False)

    @classmethod
    def negotiate(cls, offer: Dict[str, Any], endpoint_host: str, *, loopback: bool,
                  forced: Optional[str] = None) -> "BulkPeer":
        """Pick the mode for a session from the target's ``bulk_hello`` offer.

        Each offered mode judges the offer (shm needs the same kernel by boot id, the same
        user and a readable probe segment); the first usable one wins; ``forced``
        (``BRIDGE_BULK``) wins when the target offers it and it is usable.
        """
        if forced and forced not in MODES:
            raise ValueError(f"BRIDGE_BULK must be one of {', '.join(MODES)}, not {forced!r}")
        theirs, mine = offer.get("host") or {}, host_identity()
        same_host = bool(loopback and theirs.get("boot_id") == mine["boot_id"] and theirs.get("uid") == mine["uid"])
        usable = []
        for name in offer.get("modes") or ["curve"]:
            mode = TRANSFER_MODES.get(name)
            if name == "curve" or (mode is not None and mode.usable(offer, same_host=same_host)):
                usable.append(name)
            elif mode is not None:
                mode.decline(offer)
        usable = usable or ["curve"]
        chosen = forced if forced and (forced in usable or forced == "curve") else usable[0]
        port = offer.get("data_port")
        address = (endpoint_host, int(port)) if isinstance(port, int) else None
        if address is None:
            chosen = "curve"  # every bulk mode is collected through the data port
        try:
            key: Optional[bytes] = bytes.fromhex(offer["upload_key"])
        except (KeyError, TypeError, ValueError):
            key = None  # an older target: uploads stay inside CURVE
        return cls(mode=chosen, data_address=address, threshold=int(offer.get("threshold") or THRESHOLD),
                   upload_key=key)

    def connect(self, token: bytes, timeout: float = TIMEOUT_S) -> socket.socket:
        """Open the data port and ask for the transfer ``token`` (pull); every wait on the
        connection is bounded by ``timeout`` (pass the request's)."""
        if self.data_address is None:
            raise BulkError("the target offered no data port")
        return open_download(self.data_address, token, timeout)

    def export_request(self, frames: Sequence[Any]) -> Export:
        """Take big buffers out of a request's ``frames`` (header first) for upload.

        Returns (frames, descriptor or None, transfer or None), as codec.export_frames. When
        the session's mode cannot export (a full /dev/shm) another mode does
        (codec.FALLBACK) and a :class:`BulkFallbackWarning` names the cause, once; when no
        mode can, the frames are returned unchanged (they travel inside CURVE). Never loses
        the value, never raises OSError.
        """
        if self.mode not in TRANSFER_MODES or self.upload_key is None:
            return list(frames), None, None
        try:
            out, descriptor, transfer = export_with_fallback(frames, self.mode, threshold=self.threshold,
                                                             token=upload_token(self.upload_key))
        except OSError as exc:
            self._warn_fallback(str(exc), "curve")
            return list(frames), None, None
        self._note(descriptor)
        return out, descriptor, transfer

    def count(self, descriptor: Dict[str, Any]) -> None:
        """Count a received transfer (and report a fallback the sender made)."""
        self.stats[descriptor["mode"]] = self.stats.get(descriptor["mode"], 0) + len(descriptor["bufs"])
        self.stats["bytes"] += total_bytes(descriptor)
        self._note(descriptor)

    def _note(self, descriptor: Optional[Dict[str, Any]]) -> None:
        if descriptor is not None and descriptor.get("fallback"):
            self._warn_fallback(str(descriptor["fallback"]), str(descriptor.get("mode")))

    def _warn_fallback(self, cause: str, used: str) -> None:
        if self.warned:
            return
        self.warned = True
        warnings.warn(f"framebridge: the {self.mode} bulk path failed ({cause}); big values of this session "
                      f"go by {used} instead while it does (said once per session)", BulkFallbackWarning,
                      stacklevel=2)
