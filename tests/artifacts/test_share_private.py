"""`model share` never sends what a model learnt verbatim from private data unless told to.

A vocabulary learnt from the training texts and the labels' names are found in the kept
model's own files; the command runs in this process, on SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.home import NodeHome
from gridpoint.node.store.sql_store import open_store
from tests.artifacts.helpers import info, model_folder
from tests.cli_main import run_main
from tests.helpers import MakeHome

PEER = "ab" * 20


def _kept(home: NodeHome, db_url: str, folder: Path) -> str:
    store = open_store(db_url)
    try:
        return ArtifactStore(home, store).add(folder, info()).id
    finally:
        store.close()


def _readers(home: NodeHome, db_url: str, artifact_id: str) -> tuple[str, ...]:
    store = open_store(db_url)
    try:
        return ArtifactStore(home, store).get(artifact_id).readers
    finally:
        store.close()


def _private_model(path: Path) -> Path:
    """A model folder like one tune keeps from a config-built text model."""
    model_folder(path, size=1024)
    (path / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "zqsecretword": 1}}})
    )
    (path / "config.json").write_text(
        json.dumps({"model_type": "bert", "id2label": {"0": "zq-churned", "1": "zq-stayed"}})
    )
    return path


@pytest.mark.parametrize("with_flag", [False, True])
def test_a_model_with_a_learnt_vocabulary_and_label_names_is_shared_only_when_told(
    capsys: pytest.CaptureFixture[str],
    make_home: MakeHome,
    tmp_path: Path,
    db_url: str,
    with_flag: bool,
) -> None:
    # Prepare
    home: NodeHome = make_home("A")
    artifact_id = _kept(home, db_url, _private_model(tmp_path / "model"))
    flag = ("--include-private",) if with_flag else ()
    # Execute
    ran = run_main(
        capsys, "--db", db_url, "model", "share", artifact_id[:10], "--with", PEER, *flag,
        home=home.path,
    )  # fmt: skip
    # Assert
    readers = _readers(home, db_url, artifact_id)
    if with_flag:
        assert ran.returncode == 0 and readers == (PEER,)
        return
    assert ran.returncode == 1 and readers == ()
    [line] = ran.stderr.strip().splitlines()
    assert "vocabulary learnt from the training texts (tokenizer.json)" in line
    assert "names of the training labels (config.json id2label)" in line
    assert "--include-private" in line and "zqsecretword" not in line and "zq-churned" not in line


def test_a_model_with_nothing_learnt_from_private_data_is_shared_as_asked(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, db_url: str
) -> None:
    home: NodeHome = make_home("A")
    folder = model_folder(tmp_path / "model", size=1024)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "bert", "id2label": {"0": "LABEL_0", "1": "LABEL_1"}})
    )
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    artifact_id = _kept(home, db_url, folder)
    ran = run_main(
        capsys, "--db", db_url, "model", "share", artifact_id, "--with", PEER, home=home.path
    )
    assert ran.returncode == 0 and _readers(home, db_url, artifact_id) == (PEER,)


def test_share_takes_a_unique_prefix_of_a_trusted_peer_s_id(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, db_url: str
) -> None:
    from tests.helpers import pin

    home: NodeHome = make_home("A")
    peer: NodeHome = make_home("B")
    store = open_store(db_url)
    pin(store, peer, "127.0.0.1:9")
    store.close()
    artifact_id = _kept(home, db_url, model_folder(tmp_path / "model", size=1024))
    ran = run_main(
        capsys, "--db", db_url, "model", "share", artifact_id, "--with",
        peer.identity.node_id[:6], home=home.path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert _readers(home, db_url, artifact_id) == (peer.identity.node_id,)
