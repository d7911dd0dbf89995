"""The peer transport's contract, written once and run on the in-process and the gRPC one.

What sync, live query and the artifact pull rely on, whatever carries the bytes: answers
decoded or refused as PeerMisbehaved, statuses mapped to the same domain errors with the
peer's control characters removed, streams that deliver in order, free the peer's slot when
closed early, give up a peer that goes silent, and never take a message over the limit. The
peer is a real NodeService, or crafted handlers (a hostile peer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import grpc
import pytest

from gridpoint.errors import (
    Busy,
    NotShared,
    PeerError,
    PeerMisbehaved,
    PeerRefused,
    PeerUnavailable,
    RequestError,
)
from gridpoint.node.artifacts.service import ArtifactService, Download
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.peers.artifact_pull import pull
from gridpoint.node.protocol.rpc_errors import error_for_status
from gridpoint.node.store.models import RECORDS
from gridpoint.v1 import artifacts_pb2
from tests.artifacts.helpers import folder_digests, info, model_folder, random_folder
from tests.helpers import signed_records
from tests.inprocess import Network, Node
from tests.transports import MIB, TRANSPORTS, Opener


@pytest.fixture(params=TRANSPORTS)
def opener(request: pytest.FixtureRequest, net: Network) -> Iterator[Opener]:
    opened = Opener(request.param, net)
    yield opened
    opened.close()


def shared_model(node: Node, reader: Node, folder: Path, size: int) -> str:
    source = random_folder(folder, size) if size > 4 * MIB else model_folder(folder, size)
    return node.artifacts.add(source, info(readers=(reader.node_id,))).id


def chunk(data: bytes = b"x", offset: int = 0) -> bytes:
    return artifacts_pb2.ArtifactChunk(file_index=0, offset=offset, data=data).SerializeToString()


def test_hello_sync_and_query_answer_alike(net: Network, opener: Opener) -> None:
    a, b = net.pair("A", "B")
    a.store.add_records(signed_records(a.home, 3))
    transport = opener.open(b, a)

    info_ = transport.hello()
    page = transport.sync_page("", 2)
    found = transport.query("metrics.accuracy > 0", 10, "")

    assert info_.node_id == a.node_id and info_.name == "A"
    assert (len(page.envelopes), page.has_more) == (2, True)
    assert len(found) == 3
    with pytest.raises(RequestError, match="cursor"):
        transport.sync_page("not a cursor", 2)


def test_a_stream_delivers_every_chunk_of_every_file_in_order(
    net: Network, opener: Opener, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    model_id = shared_model(a, b, tmp_path / "m", 3 * MIB + 17)
    artifact = a.artifacts.get(model_id)

    chunks = list(opener.open(b, a).artifact_chunks(model_id, 0, 0))

    expected = [
        (index, offset)
        for index, f in enumerate(artifact.files)
        for offset in range(0, f.size, artifact.chunk_size)
    ]
    assert [(c.file_index, c.offset) for c in chunks] == expected
    assert sum(len(c.data) for c in chunks) == artifact.bytes


def test_a_model_not_shared_with_the_caller_is_refused_on_every_method(
    net: Network, opener: Opener, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    private = a.artifacts.add(model_folder(tmp_path / "m", 5000), info(group="study-x")).id
    transport = opener.open(b, a)

    listed = transport.artifact_manifests()
    with pytest.raises(PeerRefused, match="is not shared with node") as refused:
        transport.artifact_manifest(private)
    with pytest.raises(PeerRefused, match="is not shared with node"):
        next(transport.artifact_chunks(private, 0, 0))

    assert listed.envelopes == [] and "study-x" not in str(refused.value)


def test_two_downloads_at_once_and_a_stream_closed_early_frees_its_slot(
    net: Network, opener: Opener, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    model_id = shared_model(a, b, tmp_path / "m", 32 * MIB)
    transport = opener.open(b, a)
    held = [transport.artifact_chunks(model_id, 0, 0) for _ in range(2)]
    for stream in held:
        next(stream)

    with pytest.raises(Busy, match="as many downloads as it allows"):
        next(transport.artifact_chunks(model_id, 0, 0))
    held[0].close()
    deadline = time.monotonic() + 5
    while True:
        try:
            third = next(transport.artifact_chunks(model_id, 0, 0))
            break
        except Busy:
            assert time.monotonic() < deadline, "a stream closed early kept its slot"
            time.sleep(0.05)

    assert (third.file_index, third.offset) == (0, 0)


@pytest.mark.parametrize(("max_s", "idle_s"), [(60.0, 0.5), (0.5, 60.0)], ids=["idle", "total"])
def test_a_reader_that_stops_reading_loses_its_slot_at_either_bound(
    net: Network, opener: Opener, tmp_path: Path, max_s: float, idle_s: float
) -> None:
    # Two streams read once, then never again: the peer waits on them (flow control).
    a, b = net.pair("A", "B")
    model_id = shared_model(a, b, tmp_path / "m", 48 * MIB)
    bounded = ArtifactService(a.artifacts, 4 * MIB, max_stream_s=max_s, max_idle_s=idle_s)
    transport = opener.open(b, a, service=NodeService(a.home, a.store, bounded))
    stalled = [transport.artifact_chunks(model_id, 0, 0) for _ in range(2)]
    for stream in stalled:
        next(stream)
    with pytest.raises(Busy):
        next(transport.artifact_chunks(model_id, 0, 0))
    start = time.monotonic()

    while True:
        try:
            next(transport.artifact_chunks(model_id, 0, 0))
            break
        except Busy:
            assert time.monotonic() - start < 5, "a reader that stopped kept its slot"
            time.sleep(0.1)

    assert time.monotonic() - start >= 0.2


def _slowly(
    chunks: Iterator[artifacts_pb2.ArtifactChunk],
) -> Iterator[artifacts_pb2.ArtifactChunk]:
    """The chunks, each after a pause: a stream outlives a 0.1 s bound however fast the
    machine is."""
    for chunk in chunks:
        time.sleep(0.02)
        yield chunk


def test_a_pull_resumes_across_streams_the_peer_cuts_at_its_bound(
    net: Network, opener: Opener, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    source = random_folder(tmp_path / "m", 8 * MIB)
    model_id = a.artifacts.add(source, info(readers=(b.node_id,))).id
    started: list[int] = []

    class Counted(ArtifactService):
        def download(self, *args: Any, **kwargs: Any) -> Download:
            started.append(1)
            begun = super().download(*args, **kwargs)
            return Download(_slowly(begun.chunks), begun.release)

    bounded = Counted(a.artifacts, 4 * MIB, max_stream_s=0.1)
    transport = opener.open(b, a, service=NodeService(a.home, a.store, bounded))

    pulled = pull(b.home, b.store, model_id, connect=lambda _peer: nullcontext(transport))

    assert folder_digests(b.artifacts.folder(pulled.artifact)) == folder_digests(source)
    assert len(started) > 1


def test_a_peer_that_goes_silent_is_given_up_after_the_idle_timeout(
    net: Network, opener: Opener, silent: threading.Event
) -> None:
    a, b = net.pair("A", "B")

    def one_chunk_then_silence(*_call: object) -> Iterator[bytes]:
        yield chunk()
        silent.wait(30)

    transport = opener.open(b, a, stream_handler=one_chunk_then_silence, idle_timeout_s=0.5)
    stream = transport.artifact_chunks("0" * 64, 0, 0)
    first = next(stream)
    start = time.monotonic()

    with pytest.raises(PeerUnavailable, match="sent nothing for 0 s"):
        next(stream)

    assert first.data == b"x" and 0.4 < time.monotonic() - start < 3


def test_an_answer_over_the_message_limit_is_misbehaviour_not_busy(
    net: Network, opener: Opener
) -> None:
    a, b = net.pair("A", "B")

    def huge_answer(*_call: object) -> bytes:
        return artifacts_pb2.GetManifestResponse().SerializeToString() + b"\x00" * (5 * MIB)

    def huge_chunk(*_call: object) -> Iterator[bytes]:
        yield chunk(b"y" * (5 * MIB))

    transport = opener.open(b, a, handler=huge_answer, stream_handler=huge_chunk)

    with pytest.raises(PeerMisbehaved, match="over the size limit"):
        transport.artifact_manifest("0" * 64)
    with pytest.raises(PeerMisbehaved, match="over the size limit"):
        next(transport.artifact_chunks("0" * 64, 0, 0))


def test_answers_that_do_not_parse_are_misbehaviour(net: Network, opener: Opener) -> None:
    a, b = net.pair("A", "B")

    def garbage(*_call: object) -> bytes:
        return b"\xff\xff\xff"

    def garbage_chunks(*_call: object) -> Iterator[bytes]:
        yield chunk()
        yield b"\x0a\xff"

    transport = opener.open(b, a, handler=garbage, stream_handler=garbage_chunks)
    stream = transport.artifact_chunks("0" * 64, 0, 0)

    with pytest.raises(PeerMisbehaved, match="does not parse"):
        transport.artifact_manifest("0" * 64)
    with pytest.raises(PeerMisbehaved, match="does not parse"):
        transport.artifact_manifests()
    assert next(stream).data == b"x"
    with pytest.raises(PeerMisbehaved, match="does not parse"):
        next(stream)


def test_a_damaged_stored_envelope_reaches_the_asker_as_it_is_and_is_refused_there(
    net: Network, opener: Opener
) -> None:
    # Prepare: A holds three records, one of which some other program damaged in A's store
    # (a live answer sends envelopes as stored, never decoding them again).
    a, b = net.pair("A", "B")
    records = signed_records(a.home, 3)
    a.store.add_records(records)
    with a.store.writing() as conn:
        conn.execute(
            RECORDS.update().where(RECORDS.c.id == records[1].id).values(envelope=b"\xff\xff")
        )
    transport = opener.open(b, a)
    # Execute / Assert: the answer holding it does not parse where it arrives; answers
    # without it still come.
    with pytest.raises(PeerMisbehaved, match="does not parse"):
        transport.query("metrics.accuracy > 0", 10, "")
    assert len(transport.query("metrics.accuracy > 0", 1, "")) == 1


def test_refusals_arrive_as_domain_errors_with_the_peers_control_characters_removed(
    net: Network, opener: Opener
) -> None:
    a, b = net.pair("A", "B")
    hostile = "slots \x1b[2J\x1b]0;pwned\x07taken\x9b31m\u202e"

    def busy(*_call: object) -> Iterator[bytes]:
        yield from ()
        raise Busy(hostile)

    def refuse(*_call: object) -> bytes:
        raise NotShared(hostile)

    transport = opener.open(b, a, handler=refuse, stream_handler=busy)

    with pytest.raises(Busy) as busy_error:
        next(transport.artifact_chunks("0" * 64, 0, 0))
    with pytest.raises(PeerRefused) as refused:
        transport.artifact_manifests()

    for error in (busy_error.value, refused.value):
        assert "slots [2J]0;pwnedtaken31m" in str(error)
        assert not any(c in str(error) for c in "\x1b\x07\x9b\u202e")


@pytest.mark.parametrize(
    ("code", "details", "error"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "every download slot is taken", Busy),
        (grpc.StatusCode.UNAVAILABLE, "connection reset", Busy),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Received message larger than max (9 vs. 4)",
            PeerMisbehaved,
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", PeerUnavailable),
        (grpc.StatusCode.CANCELLED, "", Busy),  # the peer ended a stream at its bound
        (grpc.StatusCode.INTERNAL, "internal error in the peer node", PeerError),
    ],
)
def test_only_a_busy_briefly_unreachable_or_bounding_peer_is_asked_again(
    code: grpc.StatusCode, details: str, error: type[PeerError]
) -> None:
    # Busy is what a pull retries: a timeout or an oversized answer would fail the same way.
    mapped = error_for_status(code, details, "peer 127.0.0.1:1")
    assert type(mapped) is error
