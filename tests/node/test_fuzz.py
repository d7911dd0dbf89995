"""Property-based fuzzing (Hypothesis, fixed budget) of the doors a peer's bytes come in by.

- Envelope admission: catalog.admit() given arbitrary or mutated envelopes and payloads,
  signed by a trusted key or not, only ever returns a verified record or raises EnvelopeError.
- The filter language: parse_filter() on any text only returns a tree or raises FilterError,
  and any tree it returns runs on the SQLite store raising nothing but a GridpointError.
- The Artifacts answers: a manifest signed by a trusted key, a List answer and a Download
  chunk, whatever their bytes, decode to something within every manifest rule or raise
  PeerMisbehaved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridpoint.errors import EnvelopeError, FilterError, GridpointError, PeerMisbehaved
from gridpoint.node.artifacts.manifest import (
    MANIFEST_TYPE,
    MAX_CHUNK,
    ArtifactFile,
    Manifest,
    check_path,
    chunk_count,
    encode_manifest,
    verify_manifest,
)
from gridpoint.node.catalog import admit, sign_record
from gridpoint.node.peers.transport import decode_answer, decode_chunk
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, record_to_proto
from gridpoint.node.store.base import StoredRecord
from gridpoint.node.store.query_filter import parse_filter, parse_order_by
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.v1 import artifacts_pb2, envelope_pb2, records_pb2
from tests.helpers import make_record

BUDGET = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TRUSTED = NodeIdentity.generate()
STRANGER = NodeIdentity.generate()


def is_trusted(signer: str) -> bool:
    return signer == TRUSTED.node_id


def admit_or_refuse(envelope: envelope_pb2.SignedEnvelope) -> None:
    """The property: a verified record whose id and bytes match, or an EnvelopeError."""
    try:
        stored = admit(envelope, is_trusted)
    except EnvelopeError:
        return
    assert isinstance(stored, StoredRecord) and stored.signer_id == TRUSTED.node_id
    assert envelope_pb2.SignedEnvelope.FromString(stored.envelope).payload == envelope.payload


# --- envelopes ---------------------------------------------------------------------------

_GENUINE = sign_envelope(
    TRUSTED, record_to_proto(make_record(1)).SerializeToString(), RUN_RECORD_TYPE
)
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
_UINT32 = st.integers(min_value=0, max_value=2**32 - 1)
_TEXT = st.one_of(
    st.text(max_size=80), st.sampled_from(["", "bert", "a" * 300, "1" * 30, "x\x00y"])
)
_DOUBLE = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def record_messages(draw: st.DrawFn) -> bytes:
    """A RunRecord wire message with some fields set to anything their wire type allows."""
    m = record_to_proto(make_record(draw(st.integers(0, 5))))
    edits = draw(st.lists(st.integers(0, 14), max_size=6))
    for edit in edits:
        match edit:
            case 0:
                m.task.type = draw(_TEXT)
            case 1:
                m.task.num_labels = draw(_UINT32)
            case 2:
                m.model.num_parameters = draw(_UINT64)
            case 3:
                m.model.base = draw(_TEXT)
            case 4:
                m.status = draw(st.integers(-5, 10))  # type: ignore[assignment]
            case 5:
                m.kind = draw(st.integers(-5, 10))  # type: ignore[assignment]
            case 6:
                value = draw(
                    st.one_of(
                        _INT64.map(lambda v: records_pb2.ParamValue(int_value=v)),
                        _DOUBLE.map(lambda v: records_pb2.ParamValue(double_value=v)),
                        _TEXT.map(lambda v: records_pb2.ParamValue(string_value=v)),
                        st.just(records_pb2.ParamValue()),
                    )
                )
                m.hyperparameters.add(name=draw(_TEXT), value=value)
            case 7:
                m.curve.add(step=draw(_UINT64), metric=draw(_TEXT), value=draw(_DOUBLE))
            case 8:
                m.metrics.add(name=draw(_TEXT), value=draw(_DOUBLE))
            case 9:
                m.search_space.add(
                    name=draw(_TEXT),
                    kind=draw(st.sampled_from(["float", "int", "categorical", "x"])),
                    low=draw(_DOUBLE),
                    high=draw(_DOUBLE),
                    step=draw(_DOUBLE),
                    choices=draw(st.lists(_TEXT, max_size=4)),
                )
            case 10:
                m.members.append(draw(_TEXT))
            case 11:
                m.period = draw(_TEXT)
            case 12:
                m.schema_version = draw(_UINT32)
            case 13:
                m.study = draw(_TEXT)
            case _:
                m.objective_metric, m.objective_direction = draw(_TEXT), draw(_TEXT)
    payload = m.SerializeToString()
    if draw(st.booleans()):
        return payload
    # Byte-level damage on top: the parser sees what no serializer would write.
    at = draw(st.integers(0, len(payload)))
    return payload[:at] + draw(st.binary(max_size=12)) + payload[at + draw(st.integers(0, 4)) :]


@BUDGET
@given(payload=st.one_of(record_messages(), st.binary(max_size=300)))
def test_any_payload_signed_by_a_trusted_key_is_admitted_valid_or_refused(payload: bytes) -> None:
    admit_or_refuse(sign_envelope(TRUSTED, payload, RUN_RECORD_TYPE))


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> envelope_pb2.SignedEnvelope:
    """A genuine envelope with some outer fields replaced, or re-signed by a stranger."""
    envelope = envelope_pb2.SignedEnvelope()
    envelope.CopyFrom(_GENUINE)
    for edit in draw(st.lists(st.integers(0, 7), min_size=1, max_size=3)):
        match edit:
            case 0:
                envelope.payload = draw(st.binary(max_size=64))
            case 1:
                envelope.payload_type = draw(_TEXT)
            case 2:
                envelope.signer_id = draw(st.sampled_from([STRANGER.node_id, "", "0" * 40]))
            case 3:
                envelope.signer_public_key = draw(
                    st.one_of(st.binary(max_size=40), st.just(STRANGER.public_key))
                )
            case 4:
                envelope.signature = draw(st.binary(max_size=70))
            case 5:
                envelope.signed_at_unix_ms = draw(_INT64)
            case 6:
                envelope.nonce = draw(st.binary(max_size=20))
            case _:
                envelope.CopyFrom(sign_envelope(STRANGER, envelope.payload, RUN_RECORD_TYPE))
    return envelope


@BUDGET
@given(envelope=mutated_envelopes())
def test_a_mutated_envelope_is_refused_with_an_envelope_error(
    envelope: envelope_pb2.SignedEnvelope,
) -> None:
    admit_or_refuse(envelope)


@BUDGET
@given(data=st.binary(max_size=400))
def test_arbitrary_envelope_bytes_are_refused_when_they_parse(data: bytes) -> None:
    try:
        envelope = envelope_pb2.SignedEnvelope.FromString(data)
    except Exception:  # undecodable bytes never reach admit(): sync refuses the page
        return
    admit_or_refuse(envelope)


# --- filters -----------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'fuzz.db'}")
    signer = NodeIdentity.generate()
    store.add_records([sign_record(signer, make_record(i, accuracy=i / 10)) for i in range(6)])
    yield store
    store.close()


def run_filter(store: SqlStore, text: str, order_by: str = "") -> None:
    """The property: FilterError, or a tree the store runs raising only GridpointErrors."""
    try:
        where = parse_filter(text)
        order = parse_order_by(order_by)
    except FilterError:
        return
    with contextlib.suppress(GridpointError):
        store.query(where, limit=20, order_by=order)


_KEYS = st.sampled_from(
    ["kind", "signer", "study", "status", "task.type", "task.num_labels", "model.base",
     "model.num_parameters", "params.learning_rate", "params.optimizer", "metrics.accuracy",
     "params.x-y.z", "colour", "task.", "metrics."]
)  # fmt: skip
_OPS = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "LIKE", "IN", "like", "in", "=="])
_VALUES = st.one_of(
    st.text(max_size=12).filter(lambda t: "'" not in t).map(lambda t: f"'{t}'"),
    st.sampled_from(["'bert%'", "'\\%'", "'a\\'", "'_'", "'%%'", "true", "FALSE", "1e999"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
)


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    key, op = draw(_KEYS), draw(_OPS)
    if op.upper() == "IN":
        return f"{key} {op} ({', '.join(draw(st.lists(_VALUES, min_size=1, max_size=4)))})"
    return f"{key} {op} {draw(_VALUES)}"


_FILTERS = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" and ", " or ", " AND ", " oR "]), inner).map("".join),
        inner.map(lambda f: f"({f})"),
    ),
    max_leaves=12,
)


@BUDGET
@given(text=st.one_of(_FILTERS, st.text(max_size=60)), order_by=st.one_of(st.just(""), _KEYS))
def test_any_filter_text_is_a_filter_error_or_runs_on_the_store(
    catalog: SqlStore, text: str, order_by: str
) -> None:
    run_filter(catalog, text, order_by)


# --- artifacts ---------------------------------------------------------------------------

_MANIFEST = encode_manifest(
    Manifest(
        kind="trial",
        record_id="ab" * 32,
        base_model="bert-base-uncased",
        method="lora",
        chunk_size=4096,
        files=(
            ArtifactFile("adapter.bin", 5000, "00" * 32, (b"\x01" * 32, b"\x02" * 32)),
            ArtifactFile("config.json", 2, "11" * 32, (b"\x03" * 32,)),
        ),
    )
)
_PATHS = st.one_of(
    _TEXT,
    st.sampled_from(["a", "a/b", "a/b/c", "adapter.bin/x", "config.json/y", "../up", "/abs",
                     "a//b", "./a", "a\\b", "z", "a b", "x" * 600]),
)  # fmt: skip
_DIGEST = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))


@st.composite
def manifest_messages(draw: st.DrawFn) -> bytes:
    """An ArtifactManifest with some fields set to anything their wire type allows."""
    m = artifacts_pb2.ArtifactManifest.FromString(_MANIFEST)
    for edit in draw(st.lists(st.integers(0, 10), max_size=5)):
        match edit:
            case 0:
                m.schema_version = draw(_UINT32)
            case 1:
                m.kind = draw(st.one_of(_TEXT, st.just("federated")))
            case 2:
                m.record_id = draw(_TEXT)
            case 3:
                m.base_model = draw(_TEXT)
            case 4:
                m.method = draw(st.one_of(_TEXT, st.just("full")))
            case 5:
                m.chunk_size = draw(st.one_of(_UINT32, st.sampled_from([4095, 4096, MAX_CHUNK])))
            case 6:
                size = draw(st.one_of(_UINT64, st.integers(0, 3 * 4096)))
                digests = draw(st.lists(_DIGEST, max_size=4))
                m.files.add(path=draw(_PATHS), size=size, chunk_sha256=digests,
                            sha256=draw(_DIGEST))  # fmt: skip
            case 7:
                del m.files[draw(st.integers(0, max(len(m.files) - 1, 0))) :]
            case 8:
                m.files.sort(key=lambda f: draw(st.integers(0, 9)))
            case 9:
                # A well-formed file inside another file's path: only the folder rule stops it.
                if m.files:
                    inside = m.files[draw(st.integers(0, len(m.files) - 1))].path + "/w"
                    size = draw(st.integers(0, 2 * 4096))
                    count = chunk_count(size, m.chunk_size or 4096)
                    m.files.add(path=inside, size=size, chunk_sha256=[b"\x05" * 32] * count,
                                sha256=b"\x06" * 32)  # fmt: skip
                    m.files.sort(key=lambda f: f.path)
            case _:
                if m.files:
                    m.files[0].path = draw(_PATHS)
    payload = m.SerializeToString()
    if draw(st.booleans()):
        return payload
    at = draw(st.integers(0, len(payload)))
    return payload[:at] + draw(st.binary(max_size=12)) + payload[at + draw(st.integers(0, 4)) :]


def manifest_or_refusal(envelope: bytes) -> None:
    """The property: PeerMisbehaved, or a manifest within every rule a download relies on."""
    try:
        _verified, manifest = verify_manifest(envelope, is_trusted, "peer 127.0.0.1:1")
    except PeerMisbehaved:
        return
    paths = [f.path for f in manifest.files]
    assert paths == sorted(set(paths)) and 4096 <= manifest.chunk_size <= MAX_CHUNK
    for f in manifest.files:
        check_path(f.path)
        assert not any(p.startswith(f.path + "/") for p in paths)
        assert len(f.chunks) == chunk_count(f.size, manifest.chunk_size)
        assert len(f.sha256) == 64 and all(len(d) == 32 for d in f.chunks)


@BUDGET
@given(payload=st.one_of(manifest_messages(), st.binary(max_size=300)))
def test_any_manifest_signed_by_a_trusted_key_is_within_the_rules_or_refused(
    payload: bytes,
) -> None:
    manifest_or_refusal(sign_envelope(TRUSTED, payload, MANIFEST_TYPE).SerializeToString())


@BUDGET
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.lists(manifest_messages(), max_size=3).map(
            lambda payloads: artifacts_pb2.ListArtifactsResponse(
                manifests=[sign_envelope(TRUSTED, p, MANIFEST_TYPE) for p in payloads]
            ).SerializeToString()
        ),
    )
)
def test_any_list_answer_is_manifests_within_the_rules_or_peer_misbehaved(data: bytes) -> None:
    try:
        answer = decode_answer(data, artifacts_pb2.ListArtifactsResponse, "peer 127.0.0.1:1")
    except PeerMisbehaved:
        return
    for envelope in answer.manifests:
        manifest_or_refusal(envelope.SerializeToString(deterministic=True))


@BUDGET
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda index, offset, data: artifacts_pb2.ArtifactChunk(
                file_index=index, offset=offset, data=data
            ).SerializeToString(),
            _UINT32,
            _UINT64,
            st.binary(max_size=64),
        ),
    )
)
def test_any_chunk_bytes_are_a_chunk_or_peer_misbehaved(data: bytes) -> None:
    try:
        chunk = decode_chunk(data, "peer 127.0.0.1:1")
    except PeerMisbehaved:
        return
    assert 0 <= chunk.file_index < 2**32 and 0 <= chunk.offset < 2**64
    assert isinstance(chunk.data, bytes) and len(chunk.data) <= len(data)
