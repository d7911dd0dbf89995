"""Keyed pseudonyms: the only form in which this node's own names (studies, trials,
federations) ever leave it, and the owner's names turned into them where the owner writes one.

A pseudonym is 32 hex characters of HMAC-SHA256 under the node secret: stable for the node,
meaningless to anyone without its secret. The owner may write a study's own name wherever it
points at this node's records (a catalog filter, a record given to `gridpoint publish`); it
is replaced here before anything is read, sent or signed. A value that already is a pseudonym
is left as it is.

Must never return a name unchanged unless it already has the form of a pseudonym, nor log one.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from gridpoint.node.store.query_filter import And, Comparison, FilterNode, Or, Value

__all__ = ["is_pseudonym", "own_name", "own_study_names", "pseudonym"]

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")


def pseudonym(secret: bytes, kind: str, *parts: str) -> str:
    """A keyed pseudonym: 32 hex characters of HMAC-SHA256(secret, kind, parts)."""
    message = "\x00".join((kind, *parts)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def is_pseudonym(text: str) -> bool:
    """Whether text has the form of a pseudonym (32 lowercase hex characters)."""
    return _PSEUDONYM.fullmatch(text) is not None


def own_name(secret: bytes, kind: str, name: str, *context: str) -> str:
    """The pseudonym of one of the owner's names; a value already a pseudonym stays."""
    return name if is_pseudonym(name) else pseudonym(secret, kind, *context, name)


def own_study_names(where: FilterNode | None, secret: bytes) -> FilterNode | None:
    """The filter with this node's study names in `study` comparisons turned into pseudonyms.

    Lets the owner write `study = 'tiny-sentiment'`; only the pseudonym is in any record, and
    only the rewritten filter is ever sent to a peer.
    """
    return None if where is None else _with_pseudonyms(where, secret)


def _with_pseudonyms(node: FilterNode, secret: bytes) -> FilterNode:
    if isinstance(node, And | Or):
        return type(node)(tuple(_with_pseudonyms(n, secret) for n in node.operands))
    if node.key != "study" or node.op not in ("=", "!=", "IN"):
        return node

    def mapped(value: Value) -> Value:
        if not isinstance(value, str) or not value:
            return value
        return own_name(secret, "study", value)

    if isinstance(node.value, tuple):
        return Comparison(node.key, node.op, tuple(mapped(v) for v in node.value))
    return Comparison(node.key, node.op, mapped(node.value))
