"""Statements and the audience on the wire: old records keep their bytes, statements their
rules, revocation certificates read back."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from gridpoint.errors import ConfigError, RecordError
from gridpoint.node.control.statements import (
    read_revocation_certificate,
    revocation_certificate,
    sign_tombstones,
)
from gridpoint.node.protocol.envelope import verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.serde import decode_record, encode_record
from gridpoint.schema import record_from_json, record_to_json, validate_record
from gridpoint.v1 import envelope_pb2, statements_pb2
from tests.artifacts.test_lineage import _OLD_BYTES_SHA256
from tests.helpers import make_record

B, C = "b" * 40, "c" * 40


def test_a_record_without_an_audience_serializes_to_its_old_signed_bytes() -> None:
    assert hashlib.sha256(encode_record(make_record())).hexdigest() == _OLD_BYTES_SHA256


def test_an_audience_travels_through_wire_and_json() -> None:
    record = replace(make_record(), audience=(B, C))
    assert decode_record(encode_record(record)) == record
    assert record_from_json(record_to_json(record)) == record


@pytest.mark.parametrize(
    ("audience", "message"),
    [((C, B), "sorted"), ((B, B), "sorted and appear once"), (("B" * 40,), r"audience\[0\]")],
)
def test_a_bad_audience_is_refused_with_the_field_named(
    audience: tuple[str, ...], message: str
) -> None:
    with pytest.raises(RecordError, match=message):
        validate_record(replace(make_record(), audience=audience))


def test_tombstones_split_and_sort_their_ids() -> None:
    identity = NodeIdentity.generate()
    ids = [f"{i:064x}" for i in range(2500, 0, -1)]
    tombstones = sign_tombstones(identity, ids, "deletion request")
    parts = [
        statements_pb2.Tombstone.FromString(
            verify_envelope(
                _envelope(t.envelope),
                expected_type="gridpoint.v1.Tombstone",
                is_trusted=lambda _: True,
            ).payload
        ).record_ids
        for t in tombstones
    ]
    assert [len(p) for p in parts] == [1000, 1000, 500]
    assert [i for p in parts for i in p] == sorted(ids)


def _envelope(raw: bytes) -> envelope_pb2.SignedEnvelope:
    return envelope_pb2.SignedEnvelope.FromString(raw)


def test_a_revocation_certificate_reads_back_and_a_damaged_one_is_one_line(
    tmp_path: Path,
) -> None:
    identity = NodeIdentity.generate()
    text = revocation_certificate(identity)
    envelope = read_revocation_certificate(text)
    revoked = statements_pb2.KeyRevocation.FromString(envelope.payload)
    assert envelope.signer_id == identity.node_id and revoked.public_key == identity.public_key
    assert b"PRIVATE" not in text
    with pytest.raises(ConfigError, match="damaged"):
        read_revocation_certificate(text.replace(b"\n-----END", b"A\n-----END"))
    with pytest.raises(ConfigError, match="not a gridpoint revocation certificate"):
        read_revocation_certificate(b"hello")
