"""Pulling models from a trusted peer: readers only, verified, resumable, through the transport.

Everything runs in process over the transport seam (tests.inprocess.Network: real services,
stores and signed requests), but one pull through the real CLI between real daemons over
mutual TLS.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gridpoint.errors import (
    ArtifactError,
    ArtifactNotFound,
    PeerMisbehaved,
    PeerRefused,
    RequestError,
)
from gridpoint.node.artifacts.manifest import artifact_id
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.artifact_pull import offered, pull
from gridpoint.v1.envelope_pb2 import SignedEnvelope
from tests.artifacts.helpers import (
    folder_digests,
    info,
    model_folder,
    open_artifacts,
    random_folder,
)
from tests.helpers import Daemon, cli, cli_json, pin
from tests.inprocess import Network, Node

GROUP = "study-canary-7f3a"
MIB = 1024 * 1024


def keep(node: Node, folder: Path, readers: tuple[Node, ...] = ()) -> str:
    return node.artifacts.add(
        folder, info(group=GROUP, readers=tuple(r.node_id for r in readers))
    ).id


def held(node: Node | NodeHome) -> list[str]:
    """What the node's models folder holds (partial downloads included)."""
    root = (node.home if isinstance(node, Node) else node).path / "models"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.slow
def test_a_reader_pulls_over_mtls_with_the_cli_and_a_second_pull_says_it_is_there(
    make_home: Callable[[str], NodeHome], daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b = make_home("A"), make_home("B")
    daemon = Daemon.start(a)
    daemons.append(daemon)
    store_a, artifacts_a = open_artifacts(a)
    store_b, _ = open_artifacts(b)
    try:
        pin(store_a, b, "127.0.0.1:9")
        pin(store_b, a, daemon.address)
        source = model_folder(tmp_path / "m")
        model_id = artifacts_a.add(source, info(group=GROUP, readers=(b.identity.node_id,))).id
    finally:
        store_a.close()
        store_b.close()

    pulled = cli_json("model", "pull", model_id[:10], home=b.path)
    again = cli("model", "pull", model_id[:10], home=b.path)

    assert (pulled["id"], pulled["author"], pulled["fetched"]) == (
        model_id,
        a.identity.node_id,
        True,
    )
    assert (pulled["files"], pulled["record"], pulled["group"]) == (3, "ab" * 32, "")
    assert again.returncode == 0 and again.stdout.startswith("already on this node: model")
    assert folder_digests(b.path / "models" / model_id) == folder_digests(source)
    assert not any(p.startswith(".partial/") for p in held(b))


def test_a_reader_gets_the_same_bytes_and_the_author_s_group_stays_home(
    net: Network, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    source = model_folder(tmp_path / "m")
    model_id = keep(a, source, readers=(b,))
    sent: list[bytes] = []  # every byte A answers, to look for its private group name

    def recorded(*call: Any) -> bytes:
        sent.append(a.service.handle(*call))
        return sent[-1]

    def recorded_stream(*call: Any) -> Iterator[bytes]:
        for raw in a.service.handle_stream(*call):
            sent.append(raw)
            yield raw

    net.crafted[a.node_id], net.crafted_streams[a.node_id] = recorded, recorded_stream
    peer = b.store.get_peer(a.node_id)
    assert peer is not None

    offers = offered(b.home, b.store, peer, net.connector(b))
    first = pull(b.home, b.store, model_id[:10], connect=net.connector(b))
    second = pull(b.home, b.store, model_id, connect=net.connector(b))

    assert [o.id for o in offers] == [model_id]
    assert (first.artifact.id, first.fetched, second.fetched) == (model_id, True, False)
    assert first.artifact.author == a.node_id and first.artifact.group == ""
    assert folder_digests(b.artifacts.folder(first.artifact)) == folder_digests(source)
    assert [p for p in held(b) if p.startswith(".partial/")] == []
    assert len(sent) > 3 and not any(GROUP.encode() in raw for raw in sent)


def test_empty_files_and_files_of_whole_chunks_arrive_whole(net: Network, tmp_path: Path) -> None:
    a, b = net.pair("A", "B")
    source = model_folder(tmp_path / "m", size=2 * MIB)
    (source / "added_tokens.json").write_bytes(b"")
    (source / "tokenizer" / "empty.txt").write_bytes(b"")
    model_id = keep(a, source, readers=(b,))

    pulled = pull(b.home, b.store, model_id, connect=net.connector(b))

    assert len(pulled.artifact.files) == 5
    assert folder_digests(b.artifacts.folder(pulled.artifact)) == folder_digests(source)


def test_a_peer_that_is_not_a_reader_is_refused_and_nothing_is_placed(
    net: Network, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    model_id = keep(a, model_folder(tmp_path / "m"))

    with pytest.raises(PeerRefused, match="permission_denied.*is not shared"):
        pull(b.home, b.store, model_id, a.node_id[:8], connect=net.connector(b))

    assert held(b) == [] and b.artifacts.list() == []


def test_a_tampered_chunk_is_refused_and_the_partial_download_discarded(
    net: Network, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    model_id = keep(a, model_folder(tmp_path / "m"), readers=(b,))
    # The author's stored copy changes after its manifest was signed: its third chunk.
    with (a.artifacts.root / model_id / "model.safetensors").open("r+b") as f:
        f.seek(2 * MIB + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))

    with pytest.raises(PeerMisbehaved, match="does not match the signed manifest.*discarded"):
        pull(b.home, b.store, model_id, connect=net.connector(b))

    assert [p for p in held(b) if p != ".partial"] == [] and b.artifacts.list() == []


def test_an_interrupted_pull_resumes_in_place_and_completes_with_the_right_digests(
    net: Network, tmp_path: Path
) -> None:
    # Prepare: A's stream breaks off after 5 chunks the first time.
    a, b = net.pair("A", "B")
    source = random_folder(tmp_path / "m", 12 * MIB)
    model_id = keep(a, source, readers=(b,))

    def breaks_off(method: str, raw: bytes, auth: bytes | None, tls: str | None) -> Iterator[bytes]:
        stream = a.service.handle_stream(method, raw, auth, tls)
        for _ in range(5):
            yield next(stream)
        raise RequestError("the connection broke")

    net.crafted_streams[a.node_id] = breaks_off
    with pytest.raises(RequestError, match="the connection broke"):
        pull(b.home, b.store, model_id, connect=net.connector(b))
    partial = b.artifacts.root / ".partial" / model_id / "model.safetensors"
    kept = partial.stat()
    del net.crafted_streams[a.node_id]
    # Execute
    pulled = pull(b.home, b.store, model_id, connect=net.connector(b))
    # Assert
    assert kept.st_size == 4 * MIB  # config.json was the first of the 5 chunks
    assert folder_digests(b.artifacts.folder(pulled.artifact)) == folder_digests(source)
    assert not partial.parent.exists()
    # The kept part was continued in place, not fetched again into a new file.
    assert (b.artifacts.folder(pulled.artifact) / "model.safetensors").stat().st_ino == kept.st_ino


def test_the_service_lists_only_what_the_caller_may_fetch_and_refuses_bad_requests(
    net: Network, tmp_path: Path
) -> None:
    a, b = net.pair("A", "B")
    shared = keep(a, model_folder(tmp_path / "m1", size=5000, seed=1), readers=(b,))
    keep(a, model_folder(tmp_path / "m2", size=5000, seed=2))
    peer = b.store.get_peer(a.node_id)
    assert peer is not None

    offers = offered(b.home, b.store, peer, net.connector(b))
    with net.connector(b)(peer) as transport:
        listed = transport.artifact_manifests()
        with pytest.raises(RequestError, match="8 to 64 lowercase hex"):
            transport.artifact_manifest(shared[:7])
        with pytest.raises(RequestError, match="multiple of the chunk size"):
            list(transport.artifact_chunks(shared, 1, 100))
        with pytest.raises(RequestError, match="file_index must be below 3"):
            list(transport.artifact_chunks(shared, 7, 0))
        with pytest.raises(ArtifactNotFound):
            transport.artifact_manifest("0" * 64)

    [envelope] = listed.envelopes
    assert artifact_id(SignedEnvelope.FromString(envelope).payload) == shared
    assert [(o.id, o.manifest.kind) for o in offers] == [(shared, "trial")]


def test_pull_asks_every_trusted_peer_until_one_holds_the_model(
    net: Network, tmp_path: Path
) -> None:
    # Asked before A: a peer that is down, and one that holds nothing.
    gone, c, a, b = net.add("Gone"), net.add("C"), net.add("A"), net.add("B")
    for peer in (gone, c, a):
        net.trust(b, peer)
        net.trust(peer, b)
    net.down.add(gone.node_id)
    model_id = keep(a, model_folder(tmp_path / "m", size=5000), readers=(b,))

    pulled = pull(b.home, b.store, model_id[:8], connect=net.connector(b))

    assert pulled.artifact.id == model_id and pulled.artifact.author == a.node_id
    with pytest.raises(ArtifactError, match="at least its first 8 hex digits"):
        pull(b.home, b.store, "abc", connect=net.connector(b))


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Every write of this process past limit bytes into a file fails (EFBIG), as on a
    full disk, instead of ending the process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_that_fails_mid_pull_fails_it_places_nothing_and_the_next_pull_resumes(
    net: Network, tmp_path: Path
) -> None:
    # Prepare: a 12 MiB file, and writes past 5.5 MiB refused while B pulls it.
    a, b = net.pair("A", "B")
    source = random_folder(tmp_path / "m", 12 * MIB)
    model_id = keep(a, source, readers=(b,))
    partial = b.artifacts.root / ".partial" / model_id / "model.safetensors"
    # Execute
    with (
        file_size_limit(5 * MIB + MIB // 2),
        pytest.raises(ArtifactError, match=f"cannot write model {model_id[:12]}: .*too large"),
    ):
        pull(b.home, b.store, model_id, connect=net.connector(b))
    left = partial.stat().st_size, b.artifacts.list()
    running = [t.name for t in threading.enumerate() if t.name.startswith("gridpoint-pull")]
    pulled = pull(b.home, b.store, model_id, connect=net.connector(b))
    # Assert: the failed pull placed nothing and no thread of it outlived it; what it left
    # (up to the limit, maybe a torn chunk at its end) was resumed from its last whole chunk.
    assert left == (5 * MIB + MIB // 2, []) and running == []
    assert folder_digests(b.artifacts.folder(pulled.artifact)) == folder_digests(source)
    assert not partial.parent.exists()
