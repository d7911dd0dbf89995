"""An in-process peer transport: the peer's service is called directly, no socket.

Like httpx's MockTransport, it lets everything above the transport (sync, live query,
refusals) run in a unit test against a real peer service and store: requests are still
signed and authenticated over their exact bytes, and errors still pass through the status
mapping a gRPC caller would see. What it leaves out is TLS and the network.
"""

from __future__ import annotations

from collections.abc import Callable

from gridpoint.errors import GridpointError
from gridpoint.node.peers.transport import PeerTransport
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.rpc_errors import error_for_status, status_for

__all__ = ["Handler", "InProcessTransport"]

#: A peer's whole call: (method, raw request, request auth, caller's TLS name) -> raw answer.
Handler = Callable[[str, bytes, bytes | None, str | None], bytes]


class InProcessTransport(PeerTransport):
    """Calls a peer's handler (e.g. NodeService.handle) as this identity."""

    def __init__(
        self, identity: NodeIdentity, address: str, peer_node_id: str, handler: Handler
    ) -> None:
        super().__init__(identity, address, peer_node_id)
        self._handler = handler

    def close(self) -> None:
        """Nothing to release: no channel, no socket."""

    def round_trip(self, method: str, body: bytes, auth: bytes) -> bytes:
        try:
            return self._handler(method, body, auth, self._identity.node_id)
        except GridpointError as exc:
            raise error_for_status(status_for(exc), str(exc), self.address) from None
