"""Exported models any tool can verify: OpenSSF model-signing bundle plus identity binding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gridpoint.errors import ArtifactError, SignatureInvalid
from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.artifacts.export import export_model
from gridpoint.node.artifacts.model_signature import (
    BINDING_FILE,
    PUBLIC_KEY_FILE,
    SIGNATURE_FILE,
    sign_folder,
    verify_folder,
)
from gridpoint.node.artifacts.registry import Registry
from gridpoint.node.cli.main import main
from gridpoint.node.config import RegistryConfig
from gridpoint.node.home import NodeHome
from tests.artifacts.helpers import folder_digests, info, model_folder, open_artifacts
from tests.helpers import MakeHome

# model-signing's own command line, in a child process that cannot import gridpoint.
_MODEL_SIGNING = (
    "import sys; sys.modules['gridpoint'] = None; "
    "from model_signing._cli import main; sys.argv[0] = 'model_signing'; main()"
)


def model_signing_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", _MODEL_SIGNING, "verify", "key", str(folder),
         "--signature", str(folder / SIGNATURE_FILE),
         "--public_key", str(folder / PUBLIC_KEY_FILE)],
        capture_output=True, text=True, env=env, cwd=folder.parent, timeout=60,
    )  # fmt: skip


def exported(home: NodeHome, tmp_path: Path) -> tuple[Path, str]:
    store, artifacts = open_artifacts(home)
    try:
        artifact = artifacts.add(model_folder(tmp_path / "m", size=3000), info())
        registry = Registry(artifacts, store, RegistryConfig(), home.identity.node_id)
        registry.register("sentiment", artifact.id)
        registry.set_alias("sentiment", "champion", 1)
        done = export_model(home, artifacts, registry, "sentiment@champion", tmp_path / "out")
    finally:
        store.close()
    assert done.ref == "sentiment@1" and done.artifact.id == artifact.id
    return done.path, artifact.id


def test_model_signing_verifies_an_export_and_both_refuse_it_after_one_byte_changes(
    make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    folder, _ = exported(home, tmp_path)

    intact_tool = model_signing_verify(folder)
    intact_ours = verify_folder(folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1234] ^= 0x01
    weights.write_bytes(bytes(data))
    tampered_tool = model_signing_verify(folder)
    with pytest.raises(SignatureInvalid) as ours:
        verify_folder(folder)

    assert intact_tool.returncode == 0, intact_tool.stderr
    assert intact_tool.stdout.strip() == "Verification succeeded"
    assert (intact_ours.signer, intact_ours.files) == (home.identity.node_id, 3)
    assert tampered_tool.returncode == 1
    [line] = tampered_tool.stderr.strip().splitlines()
    assert line.startswith("Verification failed with error: Signature mismatch: ")
    assert "Hash mismatch for" in line and "model.safetensors" in line
    assert str(ours.value) == "out does not match its signature: changed model.safetensors"


def test_an_added_or_removed_file_and_a_swapped_key_are_refused(
    make_home: MakeHome, tmp_path: Path
) -> None:
    home, other = make_home("A"), make_home("B")
    folder, _ = exported(home, tmp_path)
    (folder / "extra.bin").write_bytes(b"x")
    (folder / "config.json").unlink()

    with pytest.raises(SignatureInvalid, match="added extra.bin; missing config.json"):
        verify_folder(folder)

    # Another node re-signs the folder with its own key, under the first node's binding.
    fresh = model_folder(tmp_path / "fresh", size=1000)
    sign_folder(other, fresh)
    (fresh / BINDING_FILE).write_bytes((folder / BINDING_FILE).read_bytes())
    with pytest.raises(SignatureInvalid, match="signing-key.pub is not the model-signing key"):
        verify_folder(fresh)


def test_a_forged_binding_is_refused(make_home: MakeHome, tmp_path: Path) -> None:
    home = make_home("A")
    folder, _ = exported(home, tmp_path)
    binding = json.loads((folder / BINDING_FILE).read_text())
    statement = json.loads(__import__("base64").b64decode(binding["payload"]))
    statement["node_id"] = "0" * 40
    binding["payload"] = __import__("base64").b64encode(json.dumps(statement).encode()).decode()
    (folder / BINDING_FILE).write_text(json.dumps(binding))

    with pytest.raises(SignatureInvalid, match="identity signature does not verify"):
        verify_folder(folder)


def test_export_writes_the_model_files_and_a_key_kept_private_in_the_home(
    make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    folder, _ = exported(home, tmp_path)

    files = folder_digests(folder)
    assert {k: v for k, v in files.items() if k not in (SIGNATURE_FILE, PUBLIC_KEY_FILE,
            BINDING_FILE)} == folder_digests(tmp_path / "m")  # fmt: skip
    assert (home.path / "model-signing.key").stat().st_mode & 0o777 == 0o600
    for name in (SIGNATURE_FILE, PUBLIC_KEY_FILE, BINDING_FILE):
        text = (folder / name).read_text()
        assert "study-canary" not in text and "sentiment" not in text
        assert str(home.path) not in text


def test_an_export_that_cannot_be_written_is_one_line_and_leaves_nothing(
    make_home: MakeHome, tmp_path: Path
) -> None:
    home = make_home("A")
    store, artifacts = open_artifacts(home)
    try:
        artifact = artifacts.add(model_folder(tmp_path / "m", size=1000), info())
        registry = Registry(artifacts, store, RegistryConfig(), home.identity.node_id)
        (tmp_path / "a-file").write_text("")
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "keep.txt").write_text("mine")
        with pytest.raises(ArtifactError, match="cannot write the model to .*: not a directory"):
            export_model(home, artifacts, registry, artifact.id, tmp_path / "a-file" / "x")
        with pytest.raises(ArtifactError, match="already exists and is not an empty folder"):
            export_model(home, artifacts, registry, artifact.id, busy)
        # The model holds a file the signature would overwrite: refused, nothing left behind.
        clash = artifacts.add(_with_file(tmp_path / "clash", SIGNATURE_FILE), info())
        with pytest.raises(SignatureInvalid, match="holds a file named model.sig"):
            export_model(home, artifacts, registry, clash.id, tmp_path / "out")
    finally:
        store.close()

    assert (busy / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def _with_file(path: Path, name: str) -> Path:
    model_folder(path, size=1000)
    (path / name).write_text("{}")
    return path


def test_the_cli_exports_by_alias_and_verifies_with_the_signer_named(
    make_home: MakeHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, stranger = make_home("A"), make_home("B")
    store, artifacts = open_artifacts(home)
    try:
        artifact = ArtifactStore(home, store).add(
            model_folder(tmp_path / "m", size=1000), info(metric="accuracy")
        )
    finally:
        store.close()
    run = ["--home", str(home.path)]
    out = tmp_path / "exported"

    codes = [
        main([*run, "model", "register", "sentiment", artifact.id[:8]]),
        main([*run, "model", "alias", "set", "sentiment", "champion", "1"]),
        main([*run, "model", "list"]),
        main([*run, "model", "list", "sentiment"]),
        main([*run, "model", "export", "sentiment@champion", str(out)]),
        main([*run, "model", "verify", str(out)]),
        main(["--home", str(stranger.path), "model", "verify", str(out)]),
        main(["model", "verify", str(out), "--signer", home.identity.node_id[:10]]),
    ]
    (tmp_path / "f").write_text("")
    codes.append(main([*run, "model", "export", "sentiment@champion", str(tmp_path / "f" / "x")]))
    printed = capsys.readouterr()

    assert codes == [0, 0, 0, 0, 0, 0, 1, 0, 1]
    assert "1 registered model (1 version)" in printed.out and "champion: 1" in printed.out
    assert "sentiment: 1 version" in printed.out and "accuracy 0.5" in printed.out
    assert "bound to node " + home.identity.node_id + " (this node)" in printed.out
    errors = printed.err.strip().splitlines()
    assert errors == [
        f"error: the signature is intact, but its signer {home.identity.node_id[:12]} is "
        "neither this node nor a trusted peer (pass --signer NODE_ID if you know it)",
        f"error: cannot write the model to {tmp_path / 'f' / 'x'}: not a directory",
    ]
