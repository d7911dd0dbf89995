"""`trust vouch`, `trust unvouch` and `trust list`: this node introduces authors to its peers.

A vouch names an author by node id, or by a trusted peer's name or id prefix; it is checked
by the same rules a peer applies, stored, and carried by sync to every peer (relayed on from
there). Peers that follow introductions ([introductions] max_depth in their config.toml) take
in that author's records from then on; an unvouch stops new ones. Records a peer already took
in are kept (like those of a peer it stops trusting), and their provenance says they are no
longer vouched for. listing() says what this node vouches for and whom it follows now.

Must never sign a vouch for this node's own identity, nor one deeper than MAX_VOUCH_DEPTH.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridpoint.errors import PeerError, RequestError
from gridpoint.node.control.gate import Gate
from gridpoint.node.control.introductions import MAX_VOUCH_DEPTH, Introduction, in_force
from gridpoint.node.control.statements import sign_unvouch, sign_vouch
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.envelope import now_ms
from gridpoint.node.store.base import CatalogStore
from gridpoint.node.store.control_base import StoredStatement, VouchEntry
from gridpoint.schema.validation import is_node_id
from gridpoint.v1 import envelope_pb2

__all__ = ["Listing", "Vouched", "listing", "unvouch", "vouch"]


@dataclass(frozen=True)
class Vouched:
    """A vouch or unvouch signed and stored: the author, the depth (0: withdrawn), the id."""

    author_id: str
    depth: int
    statement_id: str


@dataclass(frozen=True)
class Listing:
    """This node's vouches in force, and the authors it follows now (empty when off)."""

    own: list[VouchEntry]
    introduced: list[Introduction]
    max_depth: int


def _author(store: CatalogStore, self_id: str, given: str) -> str:
    """A node id as given, or the id of the one trusted peer the name or prefix names."""
    if is_node_id(given):
        author = given
    else:
        found = [p for p in store.list_peers() if p.node_id.startswith(given) or p.name == given]
        if len(found) != 1:
            what = "no trusted peer" if not found else "more than one trusted peer"
            raise PeerError(
                f"{what} matches {given[:64]!r}: give a node id (40 hex digits) or a trusted "
                "peer's name or id prefix"
            )
        author = found[0].node_id
    if author in store.key_chain().identity(self_id):
        raise RequestError("a node cannot vouch for itself")
    return author


def _store_own(store: CatalogStore, self_id: str, statement: StoredStatement) -> None:
    """Checks this node's own statement by the rules its peers apply, then stores it."""
    Gate.load(store, self_id).admit(envelope_pb2.SignedEnvelope.FromString(statement.envelope))
    store.add_statements([statement])


def _next_ms(store: CatalogStore, self_id: str, author: str) -> int:
    """Now, or just after this key's last vouch or unvouch for the author: the newest one
    this node signs is always the one in force."""
    last = [
        e.signed_at_ms for e in store.vouches() if (e.voucher_id, e.author_id) == (self_id, author)
    ]
    return max([now_ms(), *(t + 1 for t in last)])


def vouch(
    home: NodeHome, store: CatalogStore, given: str, depth: int = 1, note: str = ""
) -> Vouched:
    """Signs and stores this node's vouch for an author (node id or trusted peer)."""
    if not 1 <= depth <= MAX_VOUCH_DEPTH:
        raise RequestError(f"--depth must be 1 to {MAX_VOUCH_DEPTH}, got {depth}")
    self_id = home.identity.node_id
    author = _author(store, self_id, given)
    statement = sign_vouch(
        home.identity, author, depth, note, at_ms=_next_ms(store, self_id, author)
    )
    _store_own(store, self_id, statement)
    return Vouched(author, depth, statement.id)


def unvouch(home: NodeHome, store: CatalogStore, given: str, reason: str = "") -> Vouched:
    """Withdraws this node's vouch for an author; RequestError if it has none in force."""
    self_id = home.identity.node_id
    chain = store.key_chain()
    mine = chain.identity(self_id)
    if is_node_id(given):
        author = given
    else:
        vouched = {e.author_id for e in in_force(store.vouches(), chain) if e.voucher_id in mine}
        named = [a for a in vouched if a.startswith(given)]
        author = named[0] if len(named) == 1 else _author(store, self_id, given)
    heads = {
        chain.head(e.author_id) for e in in_force(store.vouches(), chain) if e.voucher_id in mine
    }
    if chain.head(author) not in heads:
        raise RequestError(f"this node does not vouch for {author}; see `gridpoint trust list`")
    statement = sign_unvouch(home.identity, author, reason, at_ms=_next_ms(store, self_id, author))
    _store_own(store, self_id, statement)
    return Vouched(author, 0, statement.id)


def listing(home: NodeHome, store: CatalogStore) -> Listing:
    """What this node vouches for, and whom it follows under its config now."""
    max_depth = home.config.introductions.max_depth
    gate = Gate.load(store, home.identity.node_id, max_depth)
    chain = gate.chain
    own = [e for e in in_force(store.vouches(), chain) if e.voucher_id in gate.own_ids]
    introduced = sorted(gate.introduced.values(), key=lambda i: (i.depth, i.author_id))
    return Listing(sorted(own, key=lambda e: e.author_id), introduced, max_depth)
