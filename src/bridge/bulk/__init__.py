"""The bulk path: big buffers of a value travel outside the CURVE channel.

CURVE caps bulk data at about 0.2 GB/s (docs/benchmarks.md), so buffers of at least
:data:`THRESHOLD` bytes in a pickled value (the out-of-band ``PickleBuffer`` frames of
``wire.dump_value``) are taken out of the message and moved another way. The message
keeps an empty frame in their place and a *descriptor* saying where each one went. Both
directions use this package: the target exports reply values and imports request values
(``set``, write-back); the client does the reverse.

Modules, one job each:

=================  ==========================================================================
``transfer``       the interface every mode implements (export, send, receive) and BulkError
``shm``            same host: owner-only shared-memory segments and the ring through them
``aes``            across hosts: AES-256-GCM sealed chunks over the data port
``codec``          value frames <-> descriptors, the mode table, the fallback between modes
``outgoing``       the sender's outbox of segments, transfers and uploads, and its janitor
``dataport``       the target's TCP data port; its side of a request; client connections
``negotiate``      the per-session choice (``bulk_hello``) and the client's BulkPeer
``memory``         fresh anonymous memory for received buffers
=================  ==========================================================================

Modes (``codec.TRANSFER_MODES``; ``curve`` means no bulk path):

``shm`` (same host and user)
    The buffers stream through a small ring of owner-only shared memory; one signal byte
    per chunk each way on a data-port connection (shm.py).
``aes`` (across hosts; forced on loopback with ``BRIDGE_BULK=aes``)
    The buffers stream over a data-port connection, each chunk sealed with AES-256-GCM
    under a key that is fresh for the transfer (aes.py).

**The descriptor** (JSON: the reply header's ``bulk`` field, a request's ``_bulk_in`` arg):

* ``mode``: ``"shm"`` or ``"aes"``;
* ``bufs``: ``[{"i": frame index, "n": bytes}, ...]``, the frames taken out, in stream
  order; value frames count from 1 (frame 0 is the pickle stream or the header);
* ``chunk``: bytes per chunk (at most 64 MiB);
* ``token``: hex of the transfer's 16-byte one-shot token;
* shm only: ``ring`` (the segment's path) and ``ring_bytes`` (its size, a multiple of
  ``chunk``); aes only: ``key`` (base64 of the 32-byte key);
* optional ``fallback``: why the sender used this mode and not the one asked for (the
  receiver warns once per session).

**A data-port connection** starts with ``GET <token>`` (the receiver of a reply pulls
it) or ``PUT <token>`` (the client pushes a request's buffers; the token is 8 random bytes
and the first 8 bytes of HMAC-SHA256 under the target's upload key of ``PUT `` + those 8
bytes), within 2 s. Then, shm: ``F`` (slot filled) and ``A`` (slot freed) bytes; aes: per
chunk its ciphertext and 16-byte tag, with nonce (buffer index: 4 bytes, chunk index: 8
bytes, big-endian).

**The offer** (``bulk_hello``'s reply): ``host`` (boot id, hostname, uid), ``modes`` in
order of preference, ``threshold``, ``data_port``, ``upload_key`` (hex) and, for shm,
``probe`` (a segment's path and the random cookie in it, which the client must read).

Leftovers are cleaned up by the sender: every segment, pending transfer and parked upload
has a deadline (:data:`TIMEOUT_S`, ``BRIDGE_BULK_TIMEOUT``) after which a janitor thread
unlinks or closes it; segments of dead processes are swept when a process starts serving
bulk data. The bulk path registers no op: ``bulk_hello`` lives in ``bridge.bulk_ops``.
"""

from __future__ import annotations

from .codec import (FALLBACK, MODES, TRANSFER_MODES, export_frames, export_with_fallback, import_frames, release,
                    send_transfer, total_bytes)
from .dataport import DataServer, data_server, export_reply, import_request, open_download, open_upload
from .negotiate import BulkFallbackWarning, BulkPeer, hello_reply, host_identity
from .outgoing import Outbox, outbox
from .shm import (create_segment, map_segment, probe_shm, segment_prefix, shm_available, shm_dir,
                  sweep_dead_segments, unlink_own_segment)
from .transfer import THRESHOLD, TIMEOUT_S, TOKEN_BYTES, BulkError, Transfer, TransferMode

__all__ = [
    "FALLBACK", "MODES", "TRANSFER_MODES", "THRESHOLD", "TIMEOUT_S", "TOKEN_BYTES",
    "BulkError", "BulkFallbackWarning", "BulkPeer", "DataServer", "Outbox", "Transfer", "TransferMode",
    "create_segment", "data_server", "export_frames", "export_reply", "export_with_fallback", "hello_reply",
    "host_identity", "import_frames", "import_request", "map_segment", "open_download", "open_upload", "outbox",
    "probe_shm", "release", "segment_prefix", "send_transfer", "shm_available", "shm_dir", "sweep_dead_segments",
    "total_bytes", "unlink_own_segment",
]
