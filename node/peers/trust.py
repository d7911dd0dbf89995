"""Trusting peers: `peer add` checks a peer's certificate against the fingerprint its operator
gave out of band, greets it, and pins it.

The fingerprint check alone establishes trust (it pins both the TLS key and, through the
certificate's subject, the node id). Hello needs the peer to trust us too; until it does,
the peer is pinned and the result says so, with what the other side must run.

Must never replace a trusted peer's entry with another certificate unless asked (`--replace`):
a certificate whose subject names an already trusted node id would otherwise take that
peer's place and lock the real one out. The name a peer gives itself is display text only:
control and format characters are dropped (peer_text.py) and it is cut to MAX_PEER_NAME_CHARS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gridpoint.errors import PeerConflict, PeerError, PeerRefused, PeerUnavailable
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.grpc_transport import GrpcTransport
from gridpoint.node.peers.transport import PeerInfo
from gridpoint.node.protocol.peer_text import printable
from gridpoint.node.protocol.tls import (
    fingerprint,
    node_id_of_certificate,
    probe_certificate,
    split_address,
)
from gridpoint.node.store.base import CatalogStore, Peer

__all__ = ["MAX_PEER_NAME_CHARS", "PeerAddResult", "add_peer", "find_peer"]

#: Longest peer name kept (the store holds 255 characters).
MAX_PEER_NAME_CHARS = 255


@dataclass(frozen=True)
class PeerAddResult:
    """The pinned peer, whether it already accepts us (Hello answered), and the entry it
    replaced for the same node id (None when the node id was new or its certificate the same)."""

    peer: Peer
    mutual: bool
    info: PeerInfo | None
    replaced: Peer | None = None


def add_peer(
    home: NodeHome,
    store: CatalogStore,
    address: str,
    expected_fingerprint: str,
    *,
    replace: bool = False,
) -> PeerAddResult:
    """Pins a peer after checking its certificate; nothing is stored if a check fails.

    A node id already trusted with another certificate is refused (PeerConflict) unless
    replace is true.
    """
    split_address(address)
    timeout = home.config.sync.timeout_s
    cert_pem = probe_certificate(address, expected_fingerprint, timeout=timeout)
    node_id = node_id_of_certificate(cert_pem)
    if node_id == home.identity.node_id:
        raise PeerError(f"{address} is this node itself")
    if store.key_chain().revoked(node_id):
        raise PeerError(f"node {node_id}'s key was revoked by its owner; nothing was stored")
    existing = store.get_peer(node_id)
    other_cert = existing is not None and existing.fingerprint != fingerprint(cert_pem)
    if existing is not None and other_cert and not replace:
        raise PeerConflict(
            f"node {node_id} is already trusted with another certificate (at "
            f"{existing.address}); nothing was changed. If that node really changed its "
            "certificate, run `peer add` again with --replace"
        )
    info: PeerInfo | None = None
    with GrpcTransport(
        home.identity,
        home.tls,
        address,
        node_id,
        cert_pem,
        timeout_s=timeout,
        max_message_bytes=home.config.security.max_message_bytes,
    ) as client:
        try:
            info = client.hello()
        except (PeerUnavailable, PeerRefused):
            # It answered the probe, so it is up: it does not accept our certificate yet.
            info = None
    if info is not None and (
        info.node_id != node_id or info.tls_fingerprint != fingerprint(cert_pem)
    ):
        raise PeerError(f"{address} claims an identity that does not match its certificate")
    peer = Peer(
        node_id=node_id,
        address=address,
        name=_display_name(info.name if info else _organization(cert_pem)),
        fingerprint=fingerprint(cert_pem),
        cert_pem=cert_pem,
        added_at=datetime.now(UTC),
    )
    store.add_peer(peer)
    return PeerAddResult(
        peer=peer, mutual=info is not None, info=info, replaced=existing if other_cert else None
    )


def _display_name(name: str) -> str:
    return printable(name)[:MAX_PEER_NAME_CHARS]


def _organization(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = x509.load_pem_x509_certificate(cert_pem).subject.get_attributes_for_oid(
        NameOID.ORGANIZATION_NAME
    )
    return str(names[0].value) if names else ""


def find_peer(store: CatalogStore, id_or_prefix: str) -> Peer:
    """The trusted peer whose node id is id_or_prefix or starts with it (the one rule for ids
    everywhere: the full id or a unique prefix); PeerError naming what is wrong."""
    wanted = id_or_prefix.strip().lower()
    matches = [p for p in store.list_peers() if wanted and p.node_id.startswith(wanted)]
    if not matches:
        raise PeerError(f"no trusted peer {id_or_prefix[:70]!r}; see `gridpoint peer list`")
    if len(matches) > 1:
        raise PeerError(
            f"{id_or_prefix[:70]!r} is the start of {len(matches)} trusted peers' ids: "
            "give more of it"
        )
    return matches[0]
