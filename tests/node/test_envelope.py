"""Signed envelopes: round trips, and every way a forged or altered one is refused."""

from __future__ import annotations

import pytest

from gridpoint.errors import (
    BadSignature,
    ClockOutOfWindow,
    EnvelopeError,
    UnknownSigner,
    WrongPayloadType,
)
from gridpoint.node.protocol.envelope import content_id, now_ms, sign_envelope, verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, decode_record, encode_record
from gridpoint.v1 import envelope_pb2
from tests.helpers import make_record

ALICE = NodeIdentity.generate()
MALLORY = NodeIdentity.generate()


def trusted_alice(signer: str) -> bool:
    return signer == ALICE.node_id


def signed(payload: bytes = b"payload bytes") -> envelope_pb2.SignedEnvelope:
    return sign_envelope(ALICE, payload, RUN_RECORD_TYPE)


def test_signed_record_round_trips_through_wire_bytes() -> None:
    record = make_record(3)
    payload = encode_record(record)
    wire = sign_envelope(ALICE, payload, RUN_RECORD_TYPE).SerializeToString()

    verified = verify_envelope(
        envelope_pb2.SignedEnvelope.FromString(wire),
        expected_type=RUN_RECORD_TYPE,
        is_trusted=trusted_alice,
    )

    assert verified.signer_id == ALICE.node_id
    assert verified.id == content_id(ALICE.node_id, payload)
    assert decode_record(verified.payload) == record


def test_equal_content_gives_equal_id_per_author() -> None:
    payload = encode_record(make_record(1))
    first, second = signed(payload), signed(payload)
    other = sign_envelope(MALLORY, payload, RUN_RECORD_TYPE)
    assert first.signature != second.signature
    assert content_id(first.signer_id, first.payload) == content_id(
        second.signer_id, second.payload
    )
    assert content_id(other.signer_id, other.payload) != content_id(first.signer_id, first.payload)


def test_every_flipped_bit_in_a_serialized_envelope_is_refused() -> None:
    wire = signed(encode_record(make_record(0))).SerializeToString()
    for byte in range(len(wire)):
        for bit in (0, 3, 7):
            tampered = bytearray(wire)
            tampered[byte] ^= 1 << bit
            try:
                envelope = envelope_pb2.SignedEnvelope.FromString(bytes(tampered))
            except Exception:
                continue  # does not even parse: refused at the door
            with pytest.raises(EnvelopeError):
                verify_envelope(envelope, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice)


def test_signer_not_in_the_trust_list_is_refused() -> None:
    envelope = sign_envelope(MALLORY, b"x", RUN_RECORD_TYPE)
    with pytest.raises(UnknownSigner):
        verify_envelope(envelope, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice)


def test_claiming_a_trusted_id_with_another_key_is_a_bad_signature() -> None:
    envelope = sign_envelope(MALLORY, b"x", RUN_RECORD_TYPE)
    envelope.signer_id = ALICE.node_id
    with pytest.raises(BadSignature):
        verify_envelope(envelope, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice)


def test_payload_type_is_bound_by_the_signature() -> None:
    envelope = signed()
    with pytest.raises(WrongPayloadType):
        verify_envelope(envelope, expected_type="gridpoint.v1.NodeInfo", is_trusted=trusted_alice)
    envelope.payload_type = "gridpoint.v1.NodeInfo"
    with pytest.raises(BadSignature):
        verify_envelope(envelope, expected_type="gridpoint.v1.NodeInfo", is_trusted=trusted_alice)


def test_signing_time_outside_the_window_is_refused() -> None:
    old = sign_envelope(ALICE, b"x", RUN_RECORD_TYPE, signed_at_ms=now_ms() - 3_600_000)
    future = sign_envelope(ALICE, b"x", RUN_RECORD_TYPE, signed_at_ms=now_ms() + 3_600_000)

    verify_envelope(old, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice)  # records age
    with pytest.raises(ClockOutOfWindow):
        verify_envelope(old, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice, max_age_s=300)
    with pytest.raises(ClockOutOfWindow):
        verify_envelope(future, expected_type=RUN_RECORD_TYPE, is_trusted=trusted_alice)
