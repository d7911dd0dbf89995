"""The owner's-control part of the store contract: statements, withdrawn ids, the key chain,
sharing variants and the outbound ledger.

Contract for every implementation, beside base.CatalogStore's:
- A statement is stored with its effect, in one transaction: a tombstone deletes the
  records it names that its signer's chain authored (their rows, pending copies, and the
  readers of their kept models) and remembers their ids; a rotation links the old key to the
  new one and re-keys the trusted peer that held the old key; a revocation marks the key; a
  vouch or unvouch becomes the one in force for its (signer key, author) pair if it is the
  newest by signing time (vouches() reads them; control/introductions.py says what counts).
- A record whose id was withdrawn by its author's chain is never stored again: add_records
  and store_sync_page leave it out (AddResult.withdrawn).
- The store verifies nothing: callers hand it statements gridpoint.node.control.statements
  admitted. Each statement type is one apply rule (sql_statements.APPLY) and one table.
- The ledger holds what left the node, never a payload: ids, peers, kinds, rules, times.
  An entry's count may grow after it is stored (the same item sent again soon after:
  control/ledger.py folds such repeats); nothing else in it changes until it is rolled up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from gridpoint.node.store.query_filter import FilterNode, OrderBy

if TYPE_CHECKING:  # key_chain.py is built on this module's KeyEvent
    from gridpoint.node.store.key_chain import KeyChain

__all__ = [
    "ControlStore",
    "KeyEvent",
    "KeyRevocation",
    "KeyRotation",
    "LedgerEntry",
    "LedgerRepeat",
    "LedgerWrite",
    "PeerPage",
    "ServedEnvelope",
    "Statement",
    "StatementPage",
    "StoredStatement",
    "Tombstone",
    "Unvouch",
    "Vouch",
    "VouchEntry",
    "Withdrawal",
]


@dataclass(frozen=True)
class Tombstone:
    """Withdraws records of the signer's chain."""

    record_ids: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True)
class KeyRotation:
    """Moves an identity from old_id's key to new_id's; tls_cert_pem is the new certificate."""

    old_id: str
    new_id: str
    new_public_key: bytes
    tls_cert_pem: bytes


@dataclass(frozen=True)
class KeyRevocation:
    """Revokes revoked_id's key."""

    revoked_id: str
    reason: str = ""


@dataclass(frozen=True)
class Vouch:
    """The signer vouches for author_id's records, reaching depth hops on."""

    author_id: str
    depth: int
    note: str = ""


@dataclass(frozen=True)
class Unvouch:
    """The signer withdraws its vouch for author_id."""

    author_id: str
    reason: str = ""


Statement = Tombstone | KeyRotation | KeyRevocation | Vouch | Unvouch


@dataclass(frozen=True)
class VouchEntry:
    """The vouch in force from one signer key for one author (depth 0: withdrawn by an
    Unvouch), with the signing time that made it the newest."""

    voucher_id: str
    author_id: str
    depth: int
    signed_at_ms: int
    statement_id: str
    note: str = ""


@dataclass(frozen=True)
class StoredStatement:
    """An admitted statement: its id, signer, envelope bytes as received, and content."""

    id: str
    signer_id: str
    payload_type: str
    envelope: bytes
    signed_at_ms: int
    statement: Statement


@dataclass(frozen=True)
class StatementPage:
    """Statement envelopes after a statement cursor, with the cursor after each."""

    envelopes: list[bytes]
    cursors: list[int]
    next_cursor: int
    has_more: bool


@dataclass(frozen=True)
class KeyEvent:
    """What this node knows of one key: its successor (rotation) and its revocation."""

    node_id: str
    successor_id: str | None = None
    rotated_at_ms: int | None = None
    successor_cert_pem: bytes | None = None
    revoked: bool = False


@dataclass(frozen=True)
class Withdrawal:
    """A record id withdrawn by a tombstone: who signed it, when it arrived, and why."""

    record_id: str
    signer_id: str
    statement_id: str
    reason: str
    withdrawn_at: datetime
    held: bool


# Not frozen (nor LedgerEntry below, nor control.sharing's _Sent): a sync page or live answer
# builds one of each per record (hundreds a call), and a frozen dataclass's __init__ costs four
# times a plain one's (1.4 against 0.33 µs for six fields). Nothing changes one once built.
@dataclass(slots=True)
class ServedEnvelope:
    """A stored record as a peer may be served it: the rule of the policy it matches (index
    in the rules given, -1 for none) and whether its audience admits the peer."""

    seq: int
    record_id: str
    signer_id: str
    envelope: bytes
    rule: int
    in_audience: bool


@dataclass(frozen=True)
class PeerPage:
    """Records after a record cursor, ruled for one peer (nothing decoded)."""

    items: list[ServedEnvelope]
    next_cursor: int
    has_more: bool


@dataclass(slots=True)  # not frozen: see ServedEnvelope
class LedgerEntry:
    """One thing that left the node (or, rolled up, a day's count of them): what (kind and
    item id; subject is the record it stands for, a variant's original), to which peer, when,
    by which rule of the sharing policy."""

    at: datetime
    peer_id: str
    kind: str
    item_id: str
    subject_id: str
    rule: str
    count: int = 1


@dataclass(frozen=True)
class LedgerRepeat:
    """An entry stored before, sent `more` times again: its row, and the entry it holds (the
    row is counted on only while it still holds that entry)."""

    row: int
    entry: LedgerEntry
    more: int


@dataclass(frozen=True)
class LedgerWrite:
    """What one ledger write stored: the new entries' row ids (in the order given), and the
    earlier rows asked to count repeats that are no longer stored (rolled up since, so
    nothing was added to them)."""

    ids: list[int]
    gone: frozenset[int]


class ControlStore(ABC):
    """The owner's-control tables of one node."""

    @abstractmethod
    def add_statements(self, statements: Sequence[StoredStatement]) -> tuple[int, int]:
        """Stores statements with their effects; returns (new, already held)."""

    @abstractmethod
    def statements_after(self, cursor: int, limit: int) -> StatementPage: ...

    @abstractmethod
    def count_statements(self) -> int: ...

    @abstractmethod
    def key_events(self) -> list[KeyEvent]:
        """Every key this node knows a rotation or revocation of (a small table)."""

    @abstractmethod
    def key_chain(self) -> KeyChain:
        """The key chain of key_events() as stored now (it is read on every call a peer makes:
        a store may hand out one it built, while no statement has been added since)."""

    @abstractmethod
    def vouches(self) -> list[VouchEntry]:
        """The vouch (or unvouch) in force per signer key and author, withdrawn ones included."""

    @abstractmethod
    def withdrawals(self, limit: int = 1000) -> list[Withdrawal]:
        """Withdrawn record ids, newest first."""

    @abstractmethod
    def withdrawn_of(self, authors: Mapping[str, str]) -> set[str]:
        """Which of these record ids (id -> signer) a tombstone of their author withdrew."""

    @abstractmethod
    def record_signers(self, record_ids: Sequence[str]) -> dict[str, str]:
        """The signer of each of these records that the store holds."""

    @abstractmethod
    def records_for_peer(
        self,
        cursor: int,
        limit: int,
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> PeerPage:
        """Records after cursor, each with the first rule it matches and whether its audience
        (if any) names one of reader_ids."""

    @abstractmethod
    def ruled_records(
        self,
        record_ids: Sequence[str],
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> dict[str, ServedEnvelope]:
        """These records (those held), ruled like records_for_peer's."""

    @abstractmethod
    def query_ruled(
        self,
        where: FilterNode | None,
        *,
        limit: int,
        order_by: OrderBy | None = None,
        max_bytes: int,
        rules: Sequence[FilterNode | None],
        reader_ids: Collection[str],
    ) -> list[ServedEnvelope]:
        """What query_envelopes answers (same rows, order, limit and byte budget), each
        ruled like records_for_peer's, read in the one statement."""

    @abstractmethod
    def variant(self, record_id: str, key: str) -> bytes | None:
        """The envelope of a record's variant made for one audience and parts (key)."""

    @abstractmethod
    def add_variant(self, record_id: str, key: str, variant_id: str, envelope: bytes) -> bytes:
        """Keeps a variant; returns the one kept (an earlier one for the same key wins)."""

    @abstractmethod
    def variants_of(self, record_ids: Sequence[str]) -> list[str]:
        """Ids of the variants made of these records."""

    @abstractmethod
    def append_ledger(
        self, entries: Sequence[LedgerEntry], repeats: Sequence[LedgerRepeat] = ()
    ) -> LedgerWrite:
        """Appends entries, each at its own time, and adds repeats to the counts of the rows
        stored before that still hold their entries, all in one write."""

    @abstractmethod
    def ledger(
        self,
        *,
        peer_id: str | None = None,
        since: datetime | None = None,
        subject_id: str | None = None,
        limit: int = 10_000,
    ) -> list[LedgerEntry]:
        """Entries (detailed, then rolled-up days), oldest first."""

    @abstractmethod
    def roll_up_ledger(self, before: datetime) -> int:
        """Folds detailed entries older than before into per peer, day, kind and rule counts;
        returns how many detailed entries were folded."""
