"""Pulling models over signed gRPC from a real daemon: readers only, verified, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridpoint.errors import ArtifactNotFound, PeerError, RequestError
from gridpoint.node.artifacts import client as client_module
from gridpoint.node.artifacts.client import ArtifactClient
from gridpoint.node.artifacts.manifest import artifact_id
from gridpoint.node.home import NodeHome
from gridpoint.v1.envelope_pb2 import SignedEnvelope
from tests.artifacts.helpers import (
    folder_digests,
    info,
    model_folder,
    open_artifacts,
    random_folder,
)
from tests.helpers import ROOT, Daemon, cli, cli_json, pin

GROUP = "study-canary-7f3a"


def _network(make_home, daemons: list[Daemon]) -> tuple[NodeHome, NodeHome, Daemon]:
    """A (author, daemon running) and B, trusting each other."""
    a, b = make_home("A"), make_home("B")
    daemon = Daemon.start(a)
    daemons.append(daemon)
    store_a, _ = open_artifacts(a)
    store_b, _ = open_artifacts(b)
    try:
        pin(store_a, b, "127.0.0.1:9")
        pin(store_b, a, daemon.address)
    finally:
        store_a.close()
        store_b.close()
    return a, b, daemon


def _keep(home: NodeHome, folder: Path, readers: tuple[str, ...] = ()) -> str:
    store, artifacts = open_artifacts(home)
    try:
        return artifacts.add(folder, info(group=GROUP, readers=readers)).id
    finally:
        store.close()


def _models(home: NodeHome) -> list[str]:
    root = home.path / "models"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.mark.slow
def test_a_reader_pulls_over_mtls_and_gets_the_same_bytes(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, _ = _network(make_home, daemons)
    source = model_folder(tmp_path / "m")
    model_id = _keep(a, source)
    shared = cli_json("model", "share", model_id[:8], "--with", b.identity.node_id, home=a.path)

    pulled = cli_json("model", "pull", model_id[:10], home=b.path)
    listed = cli_json("model", "list", home=b.path)

    assert pulled["id"] == model_id and pulled["author"] == a.identity.node_id
    assert [(m["id"], m["kind"], m["files"], m["record"]) for m in listed] == [
        (model_id, "trial", 3, "ab" * 32)
    ]
    assert listed[0]["group"] == ""  # the author's study name never travelled
    assert folder_digests(b.path / "models" / model_id) == folder_digests(source)
    assert not any(p.startswith(".partial/") and p.count("/") > 1 for p in _models(b))
    assert shared["readers"] == [b.identity.node_id]
    removed = cli_json("model", "remove", model_id[:8], home=b.path)
    assert removed["id"] == model_id and cli_json("model", "list", home=b.path) == []
    assert not (b.path / "models" / model_id).exists()


def test_a_peer_that_is_not_a_reader_is_refused_and_nothing_is_placed(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, daemon = _network(make_home, daemons)
    model_id = _keep(a, model_folder(tmp_path / "m"))

    result = cli("model", "pull", model_id, "--from", a.identity.node_id[:8], home=b.path)

    assert result.returncode == 1
    assert "permission_denied" in result.stderr and "is not shared" in result.stderr
    assert "Traceback" not in result.stderr
    assert _models(b) == []
    log = daemon.log()
    assert "request refused" in log and "PERMISSION_DENIED" in log
    assert GROUP not in log and str(a.path) not in log


def test_a_tampered_chunk_is_refused_and_the_partial_download_discarded(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, _ = _network(make_home, daemons)
    model_id = _keep(a, model_folder(tmp_path / "m"), readers=(b.identity.node_id,))
    # The author's stored copy changes after its manifest was signed: its third chunk.
    with (a.path / "models" / model_id / "model.safetensors").open("r+b") as f:
        f.seek(2 * 1024 * 1024 + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))

    result = cli("model", "pull", model_id, home=b.path)

    assert result.returncode == 1
    assert "does not match the signed manifest" in result.stderr
    assert "partial download was discarded" in result.stderr
    assert [p for p in _models(b) if p != ".partial"] == []
    assert cli_json("model", "list", home=b.path) == []


@pytest.mark.slow
def test_a_pull_killed_midway_resumes_and_completes_with_the_right_digest(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, _ = _network(make_home, daemons)
    source = random_folder(tmp_path / "m", 96 * 1024 * 1024)
    model_id = _keep(a, source, readers=(b.identity.node_id,))
    partial = b.path / "models" / ".partial" / model_id / "model.safetensors"
    argv = [sys.executable, "-m", "gridpoint", "--home", str(b.path), "model", "pull", model_id]
    first = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            if partial.exists() and partial.stat().st_size >= 8 * 1024 * 1024:
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        first.wait(timeout=30)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL, "the first pull finished before it was killed"
    kept = partial.stat()
    assert 0 < kept.st_size < 96 * 1024 * 1024

    pulled = cli_json("model", "pull", model_id, home=b.path)

    assert pulled["id"] == model_id
    assert folder_digests(b.path / "models" / model_id) == folder_digests(source)
    assert not (b.path / "models" / ".partial" / model_id).exists()
    # The kept part was continued in place, not fetched again into a new file.
    assert (b.path / "models" / model_id / "model.safetensors").stat().st_ino == kept.st_ino


def test_the_service_lists_only_what_the_caller_may_fetch_and_refuses_bad_requests(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, daemon = _network(make_home, daemons)
    shared = _keep(a, model_folder(tmp_path / "m1", size=5000, seed=1), (b.identity.node_id,))
    _keep(a, model_folder(tmp_path / "m2", size=5000, seed=2))
    store_b, _ = open_artifacts(b)
    try:
        peer = store_b.get_peer(a.identity.node_id)
    finally:
        store_b.close()
    assert peer is not None

    with ArtifactClient(b, peer) as client:
        listed = client.list()
        with pytest.raises(RequestError, match="8 to 64 lowercase hex"):
            client.get_manifest(shared[:7])
        with pytest.raises(RequestError, match="multiple of the chunk size"):
            list(client.download(shared, 1, 100))
        with pytest.raises(RequestError, match="file_index must be below 3"):
            list(client.download(shared, 7, 0))
        with pytest.raises(ArtifactNotFound):
            client.get_manifest("0" * 64)

    [envelope] = listed
    assert artifact_id(SignedEnvelope.FromString(envelope).payload) == shared
    assert daemon.process.poll() is None


def test_a_node_serves_at_most_two_downloads_at_once_and_frees_a_slot_on_cancel(
    make_home, daemons: list[Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = _network(make_home, daemons)
    model_id = _keep(a, random_folder(tmp_path / "m", 32 * 1024 * 1024), (b.identity.node_id,))
    store_b, _ = open_artifacts(b)
    try:
        peer = store_b.get_peer(a.identity.node_id)
    finally:
        store_b.close()
    assert peer is not None
    monkeypatch.setattr(client_module, "_BUSY_TRIES", 1)
    clients = [ArtifactClient(b, peer) for _ in range(3)]
    try:
        # Two streams started and left unread: the server holds their slots.
        held = [c.download(model_id, 0, 0) for c in clients[:2]]
        for stream in held:
            next(stream)
        with pytest.raises(PeerError, match="as many downloads as it allows"):
            next(clients[2].download(model_id, 0, 0))
        held[0].close()
        deadline = time.monotonic() + 10
        while True:
            try:
                chunk = next(clients[2].download(model_id, 0, 0))
                break
            except PeerError:
                assert time.monotonic() < deadline, "a cancelled download kept its slot"
                time.sleep(0.2)
        assert chunk.file_index == 0 and chunk.offset == 0
    finally:
        for c in clients:
            c.close()


@pytest.mark.slow
def test_pull_asks_every_trusted_peer_until_one_holds_the_model(
    make_home, daemons: list[Daemon], tmp_path: Path
) -> None:
    a, b, _ = _network(make_home, daemons)
    c = make_home("C")
    dc = Daemon.start(c)
    daemons.append(dc)
    gone = make_home("Gone")
    store_b, _ = open_artifacts(b)
    store_c, _ = open_artifacts(c)
    try:
        pin(store_c, b, "127.0.0.1:9")
        # Asked before A: a peer that is down, and one that holds nothing.
        store_b.remove_peer(a.identity.node_id)
        pin(store_b, gone, "127.0.0.1:9")
        pin(store_b, c, dc.address)
        pin(store_b, a, daemons[0].address)
    finally:
        store_b.close()
        store_c.close()
    model_id = _keep(a, model_folder(tmp_path / "m", size=5000), (b.identity.node_id,))

    pulled = cli_json("model", "pull", model_id[:8], home=b.path)
    short = cli("model", "pull", "abc", home=b.path)

    assert pulled["id"] == model_id and pulled["author"] == a.identity.node_id
    assert short.returncode == 1 and "at least its first 8 hex digits" in short.stderr
