"""`policy explain PEER` and `policy check`: what a peer receives under the policy, and why.

explain() walks the catalog the way the serving side does (the database rules each record,
sharing.decide() says what happens to it) and counts, rule by rule, how many records the
peer receives, in which form, and how many are withheld and why. It signs nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gridpoint.errors import PeerError
from gridpoint.node.control.policy import PARTS, SharingPolicy, SharingRule, load_policy
from gridpoint.node.control.sharing import decide
from gridpoint.node.home import NodeHome
from gridpoint.node.store.base import CatalogStore, Peer

__all__ = ["Check", "Explanation", "RuleShare", "check", "explain", "find_peer"]

_PAGE = 5000


@dataclass(frozen=True)
class RuleShare:
    """One rule as it applies to one peer: whether its groups take the peer in, and what
    happens to the records it decides (counted by outcome)."""

    name: str
    line: int
    matches: str
    groups: tuple[str, ...]
    parts: tuple[str, ...]
    admits: bool
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Explanation:
    """What one peer receives: its groups, each rule's share, and the statements it gets."""

    peer: Peer
    groups: list[str]
    rules: list[RuleShare]
    statements: int


@dataclass(frozen=True)
class Check:
    """A policy that loads, and the group members this node does not trust (a warning)."""

    policy: SharingPolicy
    untrusted: dict[str, list[str]]


def find_peer(store: CatalogStore, given: str) -> Peer:
    """A trusted peer by node id, unique id prefix or name."""
    peers = store.list_peers()
    found = [p for p in peers if p.node_id.startswith(given) or p.name == given]
    if len(found) != 1:
        what = "no trusted peer" if not found else "more than one trusted peer"
        raise PeerError(f"{what} matches {given[:64]!r}; see `gridpoint peer list`")
    return found[0]


def check(home: NodeHome, store: CatalogStore) -> Check:
    """The policy of config.toml (PolicyError naming the line of a mistake)."""
    policy = load_policy(home.config_path, home.secret)
    chain = store.key_chain()
    trusted = {p.node_id for p in store.list_peers()}
    untrusted = {
        name: sorted(m for m in members if chain.head(m) not in trusted)
        for name, members in policy.groups.items()
    }
    return Check(policy, {g: m for g, m in untrusted.items() if m})


def _share(rule: SharingRule, policy: SharingPolicy, ids: frozenset[str]) -> RuleShare:
    return RuleShare(
        rule.name,
        rule.line,
        rule.text or ("records no rule matches" if rule.name == "default" else "every record"),
        rule.groups,
        tuple(p for p in PARTS if p in rule.parts),
        policy.admits(rule, ids),
    )


def explain(home: NodeHome, store: CatalogStore, given: str) -> Explanation:
    """What the peer `given` receives from this node now, rule by rule."""
    policy = load_policy(home.config_path, home.secret)
    peer = find_peer(store, given)
    chain = store.key_chain()
    ids = frozenset(chain.identity(peer.node_id))
    own = frozenset(chain.identity(home.identity.node_id))
    shares = [_share(r, policy, ids) for r in (*policy.rules, policy.default_rule)]
    cursor, more = 0, True
    while more:
        page = store.records_for_peer(cursor, _PAGE, policy.conditions, ids)
        for item in page.items:
            rule = policy.rule_at(item.rule)
            what = decide(
                rule, policy, ids, in_audience=item.in_audience, ours=item.signer_id in own
            )
            shares[item.rule].outcomes[what] += 1
        cursor, more = page.next_cursor, page.has_more
    return Explanation(peer, policy.groups_of(ids), shares, store.count_statements())
