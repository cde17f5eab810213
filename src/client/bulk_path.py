"""The client's one place for the bulk path (bridge/bulk/, docs/protocol.md "Big values").

A request says which bulk mode it takes big reply buffers in and sends its own big
buffers outside the message (:class:`Outgoing`, with an :class:`Upload` streaming beside
it through the data port); a reply's buffers that came outside it are put back by
:func:`finish_reply`. Direct channels (client/transport.py) and the links the I/O loop
serves (client/link.py) both use these. Every wait on the data port is bounded by the
request's timeout (``bulk.TIMEOUT_S`` for a request that waits without one).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

from bridge import bulk, protocol

from .errors import error_from_reply


def choose_bulk(offer: Optional[Dict[str, Any]], endpoint: str, local: bool) -> Optional[bulk.BulkPeer]:
    """A session's bulk path from the target's ``bulk_hello`` offer (None: CURVE only).
    ``BRIDGE_BULK`` = shm | aes | curve forces one."""
    forced = os.environ.get("BRIDGE_BULK") or None
    if forced == "curve" or not offer:
        return None
    peer = bulk.BulkPeer.negotiate(offer, protocol.endpoint_host(endpoint), loopback=local, forced=forced)
    return None if peer.mode == "curve" else peer


class Outgoing:
    """A request's value frames, its big buffers moved to the bulk path (bridge/bulk/)
    when the session has one: ``frames`` and ``descriptor`` go into the message, an
    ``aes`` upload streams beside it (:meth:`sent`), :meth:`close` cleans up after the reply.
    A session whose own mode cannot export (a full /dev/shm) sends through another, or
    inside the message (``BulkPeer.export_request``): the value is never lost."""

    def __init__(self, peer: Optional[bulk.BulkPeer], frames: Optional[List[Any]], pid: int,
                 timeout: Optional[float] = None) -> None:
        self.peer = peer
        self.mode = peer.mode if peer is not None and peer.mode != "curve" else None
        self.frames = frames
        self.descriptor: Optional[Dict[str, Any]] = None
        self.upload: Optional[Upload] = None
        if self.mode is not None and frames:
            exported, descriptor, transfer = peer.export_request([b""] + list(frames))  # type: ignore[union-attr]
            if descriptor is not None:
                self.frames = exported[1:]
                self.descriptor = descriptor
            if transfer is not None:
                try:
                    self.upload = Upload(peer, transfer, pid, timeout)  # type: ignore[arg-type]
                except BaseException:  # no data port, refused: nothing was sent
                    transfer.close()
                    if descriptor is not None:
                        bulk.release(descriptor)
                    raise

    def sent(self) -> None:
        """The request is on its way: start streaming the upload, if any."""
        if self.upload is not None:
            self.upload.start()

    def close(self) -> None:
        """After the reply (or a failure): stop the upload, release what the target did not map."""
        if self.upload is not None:
            self.upload.finish()
            self.upload = None
        if self.descriptor is not None:
            bulk.release(self.descriptor)  # segments the target did not map are gone now

    def count(self) -> None:
        """Count a delivered upload in the session's bulk statistics."""
        if self.descriptor is not None and self.peer is not None:
            self.peer.stats["uploads"] += 1
            self.peer.count(self.descriptor)


def finish_reply(header: Dict[str, Any], values: List[Any], peer: Optional[bulk.BulkPeer],
                 pid: int, timeout: Optional[float] = None) -> Tuple[Dict[str, Any], List[Any]]:
    """A raw reply made usable: an error reply raises its exception; buffers that came by
    the bulk path are put back among the values (each data-port wait bounded by ``timeout``)."""
    if not header.get("ok", True) and "error" in header:
        raise error_from_reply(header["error"])
    if "bulk" in header:  # big buffers came outside the CURVE message
        values = import_bulk(header["bulk"], values, peer, pid, timeout)
    return header, values


def import_bulk(descriptor: Dict[str, Any], values: List[Any], peer: Optional[bulk.BulkPeer],
                pid: int, timeout: Optional[float] = None) -> List[Any]:
    """Map / receive the buffers a reply's bulk descriptor names (progress bar if slow);
    every wait on the data port is bounded by the request's ``timeout``."""
    from .progress import transfer_progress

    peer = peer or bulk.BulkPeer()
    total = bulk.total_bytes(descriptor)
    wait = timeout or bulk.TIMEOUT_S
    with transfer_progress(total, f"pid {pid}: receiving") as report:
        frames = bulk.import_frames(descriptor, [b""] + list(values), connect=lambda token: peer.connect(token, wait),
                                    progress=report)
    peer.count(descriptor)
    return frames[1:]


class Upload:
    """Sends one upload through the target's data port beside the request's reply wait."""

    def __init__(self, peer: bulk.BulkPeer, transfer: bulk.Transfer, pid: int, timeout: Optional[float]) -> None:
        import threading

        from .progress import Progress

        if peer.data_address is None:
            raise bulk.BulkError("the target offered no data port")
        self.sock = bulk.open_upload(peer.data_address, transfer.token, timeout or bulk.TIMEOUT_S)
        self.transfer = transfer
        self.error: Optional[BaseException] = None
        self.progress = Progress(sum(b.nbytes for b in transfer.buffers), f"pid {pid}: sending")
        self.thread = threading.Thread(target=self._run, name="framebridge-upload", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            bulk.send_transfer(self.sock, self.transfer, self.progress)
        except BaseException as exc:  # the target refused or went away: the reply says why
            self.error = exc

    def finish(self) -> None:
        """After the reply (or an interruption): stop streaming if it still is, close."""
        import socket as _socket

        if self.thread.is_alive():
            try:
                self.sock.shutdown(_socket.SHUT_RDWR)  # unblocks a sendall the target never read
            except OSError:
                pass
            self.thread.join(5.0)
        self.progress.close(self.error is None)
        self.sock.close()
        self.transfer.close()


def drop_bulk(header: Dict[str, Any]) -> None:
    """An abandoned reply's shared-memory ring is unlinked at once (same user)."""
    descriptor = header.get("bulk")
    if isinstance(descriptor, dict) and descriptor.get("mode") == "shm":
        bulk.unlink_own_segment(descriptor.get("ring"))
