"""The server op of the bulk path: ``bulk_hello`` (bridge.bulk says what it offers)."""

from __future__ import annotations

from typing import Any, Dict, Sequence

from . import bulk
from .ops import server_op


@server_op("bulk_hello")
def _op_bulk_hello(server: Any, args: Dict[str, Any], values: Sequence[Any], identity: bytes) -> Dict[str, Any]:
    """Offer the bulk modes this target can serve (the client picks, per session)."""
    return bulk.hello_reply(server.host)
