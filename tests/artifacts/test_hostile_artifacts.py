"""A trusted but hostile or broken peer's Artifacts answers, in process: every pull ends in one
line (a GridpointError), keeps nothing it should not, and costs a bounded amount.

The hostile peer is crafted handlers in place of its service (tests.inprocess.Network); the
node that pulls is real. Manifests are genuinely signed by the hostile peer's own key (a
trusted author), so only the rules a manifest and a download obey stand in the way.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gridpoint.errors import ArtifactError, Busy, GridpointError, PeerMisbehaved, PeerUnavailable
from gridpoint.node.artifacts.manifest import (
    MANIFEST_TYPE,
    ArtifactFile,
    Manifest,
    artifact_id,
    encode_manifest,
)
from gridpoint.node.peers import artifact_pull
from gridpoint.node.peers.artifact_pull import Pulled, disk_margin, offered, pull
from gridpoint.node.peers.inprocess import StreamHandler
from gridpoint.node.protocol.envelope import sign_envelope
from gridpoint.node.protocol.methods import ARTIFACTS_GET_MANIFEST, ARTIFACTS_LIST
from gridpoint.v1 import artifacts_pb2
from tests.artifacts.helpers import info, model_folder
from tests.inprocess import Network, Node

CHUNK = 4096


def forged(signer: Node, files: dict[str, bytes], wrong_whole: str = "") -> tuple[bytes, str]:
    """A manifest for files signed by signer (the whole-file digest of wrong_whole made up),
    as its envelope's bytes, and its id."""
    manifest = Manifest(
        kind="trial",
        record_id="",
        base_model="",
        method="full",
        chunk_size=CHUNK,
        files=tuple(
            ArtifactFile(
                path,
                len(data),
                hashlib.sha256(b"made up" if path == wrong_whole else data).hexdigest(),
                tuple(
                    hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)
                ),
            )
            for path, data in sorted(files.items())
        ),
    )
    payload = encode_manifest(manifest)
    envelope = sign_envelope(signer.home.identity, payload, MANIFEST_TYPE)
    return envelope.SerializeToString(deterministic=True), artifact_id(payload)


def serve(net: Network, peer: Node, envelope: bytes, files: dict[str, bytes]) -> list[str]:
    """Makes peer answer GetManifest with envelope and Download with the files' chunks;
    returns the methods it was called for."""
    calls: list[str] = []
    ordered = [data for _path, data in sorted(files.items())]

    def answer(method: str, *_rest: object) -> bytes:
        calls.append(method)
        response = artifacts_pb2.GetManifestResponse()
        response.manifest.ParseFromString(envelope)
        return response.SerializeToString()

    def chunks(method: str, raw: bytes, *_rest: object) -> Iterator[bytes]:
        calls.append(method)
        asked = artifacts_pb2.DownloadRequest.FromString(raw)
        for index in range(asked.file_index, len(ordered)):
            start = asked.offset if index == asked.file_index else 0
            for offset in range(start, len(ordered[index]), CHUNK):
                data = ordered[index][offset : offset + CHUNK]
                yield artifacts_pb2.ArtifactChunk(
                    file_index=index, offset=offset, data=data
                ).SerializeToString()

    net.crafted[peer.node_id] = answer
    net.crafted_streams[peer.node_id] = chunks
    return calls


def models(node: Node) -> list[str]:
    root = node.home.path / "models"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def one_line(error: GridpointError, node: Node) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    assert str(node.home.path) not in text and str(node.home.path.parent) not in text
    return text


@pytest.mark.parametrize("method", [ARTIFACTS_GET_MANIFEST, ARTIFACTS_LIST])
def test_an_answer_that_does_not_parse_is_one_line_peer_misbehaved(
    net: Network, method: str
) -> None:
    h, b = net.pair("H", "B")
    net.crafted[h.node_id] = lambda *_call: b"\x0a\x05\x0a\x03abc\xff"
    peer = b.store.get_peer(h.node_id)
    assert peer is not None

    with pytest.raises(PeerMisbehaved) as refused:
        if method == ARTIFACTS_LIST:
            offered(b.home, b.store, peer, net.connector(b))
        else:
            pull(b.home, b.store, "ab" * 32, connect=net.connector(b))

    assert "does not parse" in one_line(refused.value, b)
    assert [p for p in models(b) if p != ".partial"] == []


def test_a_chunk_that_does_not_parse_is_peer_misbehaved_and_nothing_is_placed(
    net: Network,
) -> None:
    h, b = net.pair("H", "B")
    files = {"model.bin": b"w" * (3 * CHUNK)}
    envelope, model_id = forged(h, files)
    serve(net, h, envelope, files)
    good = net.crafted_streams[h.node_id]

    def breaks(*call: object) -> Iterator[bytes]:
        stream = good(*call)  # type: ignore[arg-type]
        yield next(stream)
        yield b"\x0a\xff\xff"

    net.crafted_streams[h.node_id] = breaks

    with pytest.raises(PeerMisbehaved) as refused:
        pull(b.home, b.store, model_id, connect=net.connector(b))

    assert "does not parse" in one_line(refused.value, b)
    assert b.artifacts.list() == []


def test_a_manifest_listing_a_file_and_a_file_inside_it_is_refused_before_anything_is_written(
    net: Network,
) -> None:
    h, b = net.pair("H", "B")
    files = {"a": b"x" * 10, "a/b": b"y" * 10}
    envelope, model_id = forged(h, files)
    calls = serve(net, h, envelope, files)

    for _ in range(2):  # every retry fails the same clean way
        with pytest.raises(PeerMisbehaved) as refused:
            pull(b.home, b.store, model_id, connect=net.connector(b))
        assert "'a' both as a file and as the folder of 'a/b'" in one_line(refused.value, b)

    assert models(b) == []
    assert calls == [ARTIFACTS_GET_MANIFEST] * 2


def test_a_manifest_whose_whole_file_digest_contradicts_its_chunks_is_never_placed(
    net: Network,
) -> None:
    h, b = net.pair("H", "B")
    files = {"config.json": b"{}", "model.bin": bytes(range(256)) * 40}
    envelope, model_id = forged(h, files, wrong_whole="model.bin")
    serve(net, h, envelope, files)

    for _ in range(2):
        with pytest.raises(PeerMisbehaved) as refused:
            pull(b.home, b.store, model_id, connect=net.connector(b))
        assert "SHA-256 of model.bin contradicts its chunk digests" in one_line(refused.value, b)
        assert b.artifacts.list() == [] and models(b) == [".partial"]


def test_a_peer_that_sends_one_chunk_and_goes_silent_fails_the_pull_after_the_idle_timeout(
    net: Network, silent: threading.Event
) -> None:
    h, b = net.pair("H", "B")
    files = {"model.bin": b"z" * (4 * CHUNK)}
    envelope, model_id = forged(h, files)
    serve(net, h, envelope, files)
    honest = net.crafted_streams[h.node_id]

    def stalls(*call: object) -> Iterator[bytes]:
        yield next(honest(*call))  # type: ignore[arg-type]
        silent.wait(30)

    net.crafted_streams[h.node_id] = stalls
    net.idle_timeout_s = 0.5
    start = time.monotonic()

    with pytest.raises(PeerUnavailable) as gave_up:
        pull(b.home, b.store, model_id, connect=net.connector(b))

    assert "sent nothing for 0 s" in one_line(gave_up.value, b)
    assert time.monotonic() - start < 3
    kept = b.home.path / "models" / ".partial" / model_id / "model.bin"
    assert kept.stat().st_size == CHUNK  # the verified chunk stays for a later resume


def test_a_chunk_over_the_message_limit_is_misbehaviour_and_is_not_retried(
    net: Network,
) -> None:
    h, b = net.pair("H", "B")
    files = {"model.bin": b"q" * CHUNK}
    envelope, model_id = forged(h, files)
    calls = serve(net, h, envelope, files)

    def huge(method: str, *_rest: object) -> Iterator[bytes]:
        calls.append(method)
        yield artifacts_pb2.ArtifactChunk(data=b"q" * (5 * 1024 * 1024)).SerializeToString()

    net.crafted_streams[h.node_id] = huge

    with pytest.raises(PeerMisbehaved) as refused:
        pull(b.home, b.store, model_id, connect=net.connector(b))

    assert "over the size limit" in one_line(refused.value, b)
    assert len(calls) == 2  # the manifest, one download


def _pull_through(
    net: Network,
    monkeypatch: pytest.MonkeyPatch,
    stream: Callable[[list[str], StreamHandler], StreamHandler],
) -> tuple[Pulled, str, list[str], list[float]]:
    """B pulls H's four-chunk model, H's downloads answered by stream(calls, honest handler);
    returns what was pulled, the model's id, H's calls and the waits (recorded, not slept)."""
    h, b = net.pair("H", "B")
    files = {"model.bin": b"r" * (3 * CHUNK + 5)}
    envelope, model_id = forged(h, files)
    calls = serve(net, h, envelope, files)
    net.crafted_streams[h.node_id] = stream(calls, net.crafted_streams[h.node_id])
    waits: list[float] = []
    monkeypatch.setattr(artifact_pull, "time", SimpleNamespace(sleep=waits.append))
    return pull(b.home, b.store, model_id, connect=net.connector(b)), model_id, calls, waits


def test_a_busy_peer_is_asked_again_and_the_download_completes(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy_once(calls: list[str], honest: StreamHandler) -> StreamHandler:
        def handler(*call: Any) -> Iterator[bytes]:
            if len(calls) == 1:
                calls.append("busy")
                raise Busy("every download slot is taken")
            yield from honest(*call)

        return handler

    pulled, model_id, calls, waits = _pull_through(net, monkeypatch, busy_once)

    assert pulled.fetched and pulled.artifact.id == model_id
    assert calls[1:] == ["busy", calls[2]] and len(calls) == 3
    # Refused before any chunk came: it waited once before asking again.
    assert len(waits) == 1 and waits[0] > 0


def test_a_stream_the_peer_cuts_after_some_chunks_is_resumed_without_a_wait(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A peer that ends every stream after one chunk, as one that bounds its streams does
    # (gRPC's CANCELLED reaches the reader as Busy).
    def one_chunk_then_cut(calls: list[str], honest: StreamHandler) -> StreamHandler:
        def handler(*call: Any) -> Iterator[bytes]:
            yield next(iter(honest(*call)))
            raise Busy("the peer ended the call (cancelled)")

        return handler

    pulled, model_id, calls, waits = _pull_through(net, monkeypatch, one_chunk_then_cut)

    # Four streams of one chunk each, and no wait between them.
    assert pulled.fetched and pulled.artifact.id == model_id
    assert len(calls) == 1 + 4
    assert waits == []


def test_a_model_sized_exactly_to_the_free_space_is_refused_with_the_numbers(
    net: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk is the one thing made up here: it has exactly the model's size free.
    a, b = net.pair("A", "B")
    source = model_folder(tmp_path / "m", size=50_000)
    artifact = a.artifacts.add(source, info(readers=(b.node_id,)))
    real = shutil.disk_usage(tmp_path)

    def exactly_full(path: object) -> object:
        return type(real)(total=real.total, used=real.total - artifact.bytes, free=artifact.bytes)

    monkeypatch.setattr(shutil, "disk_usage", exactly_full)

    with pytest.raises(ArtifactError) as refused:
        pull(b.home, b.store, artifact.id, connect=net.connector(b))

    text = one_line(refused.value, b)
    margin = disk_margin(real.total) / 1024 / 1024
    assert f"needs {artifact.bytes / 1024 / 1024:.1f} MB more" in text
    assert f"{margin:,.1f} MB must stay free" in text
    assert b.artifacts.list() == []
