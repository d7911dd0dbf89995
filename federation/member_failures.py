"""The SuperLink's error replies in a member's stead, set apart and named by the member that failed.

When a member's SuperNode dies mid-round (or its reply cannot be had), Flower's SuperLink
answers the host's message itself, with an error reply from the SuperLink's own node id
that points only at the message it answers (reply_to_message_id). FailureGrid remembers
whom each message it pushed went to, hands on the members' own replies alone, and keeps
a refusal for each error reply naming that member by its gridpoint node id, as the host
recorded it (flower_nodes.py), so a round's "refused" names it as it names every other.

Both kinds of round go through it (rounds.py: the verifying strategy's plain rounds, and
secure_round.py's SignedGrid under SecAgg+, for which a missing reply is a dropped member).
It must never hand an error reply on, nor take a member's name from one: an error reply's
sender is the SuperLink, whoever failed. reply_member names the member behind a reply that
failed its check in the same way, so every refusal in a round's journal reads alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.serverapp import Grid

from gridpoint.federation.update_signing import SIGNATURE_RECORD
from gridpoint.schema.validation import is_node_id

__all__ = ["FailureGrid", "claimed_signer", "reply_member"]

log = logging.getLogger("gridpoint.federation")


@dataclass
class FailureGrid:
    """A Grid that hands on only the members' replies; `failed` names who failed and why."""

    grid: Grid
    #: A member's gridpoint node id from its Flower node id (flower_nodes.member_id).
    member_of: Callable[[int], str]
    #: {"node": gridpoint node id, "reason": "member failed: " + Flower's reason}, one a member.
    failed: list[dict[str, str]] = field(default_factory=list)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        # A list, not the caller's iterable: Flower's grids give each message they push its
        # id in place, and these very objects tell whom an error reply's message went to.
        sent = list(messages)
        replies = self.grid.send_and_receive(sent, timeout=timeout)
        sent_to = {str(m.metadata.message_id): int(m.metadata.dst_node_id) for m in sent}
        kept = []
        for reply in replies:
            if not reply.has_error():
                kept.append(reply)
                continue
            flower_id = sent_to.get(str(reply.metadata.reply_to_message_id))
            node = self.member_of(flower_id) if flower_id is not None else "an unknown member"
            reason = "member failed: " + str(reply.error.reason)[:200]
            if not any(r["node"] == node for r in self.failed):
                self.failed.append({"node": node, "reason": reason})
            log.warning("reply of %s left out: %s", node, reason)
        return kept


def claimed_signer(reply: Message) -> str | None:
    """The node id a reply's signature record claims (a claim only), None if it carries none
    or something that is no node id: a member's text never enters a journal or a log."""
    try:
        claimed = str(reply.content.config_records[SIGNATURE_RECORD]["signer_id"])
    except KeyError:
        return None
    return claimed if is_node_id(claimed) else None


def reply_member(reply: Message, member_of: Callable[[int], str]) -> str:
    """Who a reply that failed its check stands for: the signer it claims, or else the member
    its Flower node was registered for (the SuperLink authenticated that SuperNode's key)."""
    return claimed_signer(reply) or member_of(int(reply.metadata.src_node_id))
