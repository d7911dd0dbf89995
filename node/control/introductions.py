"""Introductions: which authors a node takes records from because someone it trusts vouched.

A vouch (statements.proto Vouch) by a trusted identity (a peer of this node, or this node)
puts its author at depth 1; a vouch by an author introduced at depth n puts its author at
depth n + 1. An author is introduced when some chain of vouches reaches it within the node's
max_depth ([introductions] in config.toml; 0, the default, follows none) and within what each
vouch on the way allows (its own depth: 1 = the author only, 2 = and whom it vouches for...).
The newest vouch or unvouch one identity signed for an author is the one in force; a vouch
whose signer is revoked, or no longer trusted nor introduced, counts for nothing, so losing
trust in a voucher stops everything it introduced at once.

Pure: built from the store's vouch entries, the trusted set and the key chain; it reads no
database and checks no signature (statements.py did, at admission). Must never introduce an
author beyond max_depth, nor count a vouch from a revoked key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gridpoint.node.store.control_base import VouchEntry
from gridpoint.node.store.key_chain import KeyChain

__all__ = ["MAX_VOUCH_DEPTH", "Introduction", "in_force", "introductions"]

#: The deepest a vouch may reach, and the largest max_depth a node may set.
MAX_VOUCH_DEPTH = 8


@dataclass(frozen=True)
class Introduction:
    """How an author is introduced: by whose vouch (a key), at which depth, and how many more
    hops its own vouches may reach (0: they count for nothing here)."""

    author_id: str
    voucher_id: str
    depth: int
    reach: int
    statement_id: str


def in_force(entries: Iterable[VouchEntry], chain: KeyChain) -> list[VouchEntry]:
    """Per voucher identity and author identity, the newest entry, if it is a vouch (not an
    unvouch) and its signer key is not revoked."""
    newest: dict[tuple[str, str], VouchEntry] = {}
    for entry in entries:
        key = (chain.head(entry.voucher_id), chain.head(entry.author_id))
        held = newest.get(key)
        if held is None or (held.signed_at_ms, held.statement_id) < (
            entry.signed_at_ms,
            entry.statement_id,
        ):
            newest[key] = entry
    return [
        e
        for e in newest.values()
        if e.depth > 0 and not chain.revoked(e.voucher_id) and _before_rotation(e, chain)
    ]


def _before_rotation(entry: VouchEntry, chain: KeyChain) -> bool:
    rotated_at = chain.rotated_at_ms(entry.voucher_id)
    return rotated_at is None or entry.signed_at_ms < rotated_at


def introductions(
    entries: Iterable[VouchEntry],
    trusted: Callable[[str], bool],
    chain: KeyChain,
    max_depth: int,
) -> dict[str, Introduction]:
    """The introduced authors (by the newest id of their identity): each with the vouch that
    reaches it with the most reach left (then the least depth). Directly trusted identities
    are not in it: they need no introduction."""
    if max_depth <= 0:
        return {}
    vouches = sorted(in_force(entries, chain), key=lambda e: e.statement_id)
    best: dict[str, Introduction] = {}

    def better(candidate: Introduction) -> bool:
        held = best.get(candidate.author_id)
        return held is None or (candidate.reach, -candidate.depth) > (held.reach, -held.depth)

    # Each pass can only lengthen the best chains by one hop: max_depth passes settle it.
    for _ in range(max_depth):
        changed = False
        for vouch in vouches:
            author = chain.head(vouch.author_id)
            if trusted(vouch.author_id):
                continue
            if trusted(vouch.voucher_id):
                depth, reach = 1, max_depth - 1
            else:
                via = best.get(chain.head(vouch.voucher_id))
                if via is None or via.reach < 1:
                    continue
                depth, reach = via.depth + 1, via.reach - 1
            candidate = Introduction(
                author, vouch.voucher_id, depth, min(reach, vouch.depth - 1), vouch.statement_id
            )
            if better(candidate):
                best[author] = candidate
                changed = True
        if not changed:
            break
    return best
