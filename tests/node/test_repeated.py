"""A live answer's bytes written from its envelopes as stored (node/protocol/repeated.py):
exactly what protobuf writes for the same message, whatever the envelopes' sizes."""

from __future__ import annotations

import pytest

from gridpoint.node.protocol.repeated import encoded_repeated
from gridpoint.v1 import catalog_pb2, envelope_pb2

_QUERY_RESPONSE = catalog_pb2.QueryResponse.DESCRIPTOR


def _envelope(payload_size: int) -> bytes:
    return envelope_pb2.SignedEnvelope(
        payload=b"p" * payload_size, signature=b"s" * 64, signer_id="a" * 40
    ).SerializeToString()


@pytest.mark.parametrize(
    "sizes",
    [
        (),
        (0,),
        (10, 300, 20_000),  # lengths of one, two and three varint bytes
        (70_000,) * 3,
    ],
)
def test_the_bytes_are_protobufs_own_and_decode_to_the_same_envelopes(
    sizes: tuple[int, ...],
) -> None:
    envelopes = [_envelope(n) for n in sizes]
    written = encoded_repeated(_QUERY_RESPONSE, "envelopes", envelopes)
    expected = catalog_pb2.QueryResponse(
        envelopes=[envelope_pb2.SignedEnvelope.FromString(e) for e in envelopes]
    )
    assert written == expected.SerializeToString()
    decoded = catalog_pb2.QueryResponse.FromString(written)
    assert [e.SerializeToString() for e in decoded.envelopes] == envelopes


def test_a_field_that_is_not_a_repeated_message_is_refused() -> None:
    with pytest.raises(ValueError, match="FetchResponse.answered is not a repeated message"):
        encoded_repeated(catalog_pb2.FetchResponse.DESCRIPTOR, "answered", [b""])
