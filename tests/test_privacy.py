"""Privacy as a tested property: planted canaries never leave a node.

Canaries go into the data texts, the label names, the column names, the file paths (study
folder, pipeline module, checkpoint directory), the study config (its name), an environment
variable, and we also watch the host and user names. A study runs, its trials are published,
a second real node syncs them; then no canary may appear in any byte of any envelope in
either catalog, nor in any byte the first node sent over the wire (Hello, Sync, Query); nor
in the tombstones of a withdrawal by study name, nor in the outbound ledger. In privacy mode
no exact evaluation value leaves either: a private study's published values are released
ones, and what has no known sensitivity is not published at all.

The model the study keeps is private, and holds what it learnt from the data (the texts'
words in its vocabulary, the label names): `model share` refuses to send it until told
--include-private; then the copy the peer pulls is byte for byte the kept one. No path,
module, study name, environment value, host or user name is in any file of either.
"""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

import grpc
import pytest

from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request
from gridpoint.node.protocol.tls import tls_hostname
from gridpoint.node.store.sql_store import open_store
from gridpoint.v1 import catalog_pb2, node_pb2
from tests.cli_main import run_main
from tests.helpers import Daemon, MakeHome, trust
from tests.tasks.studies import CANARY, TASKS, write_study

pytestmark = pytest.mark.slow

CANARIES = {
    "text": "zqcanarytext",
    "label": "ZQCANARYLABEL",
    "column": "zqcanarycolumn",
    "path": "ZQCANARYPATH",
    "module": "zqcanarymodule",
    "study": "ZQCANARYSTUDY",
    "env": "ZQCANARYENVVALUE",
    "checkpoint": "ZQCANARYCKPT",
}

PIPELINE = """
import random
from datasets import Dataset


def _split(n, seed):
    rng = random.Random(seed)
    rows = {"zqcanarycolumn_text": [], "zqcanarycolumn_label": []}
    for i in range(n):
        good = i % 2 == 0
        words = rng.choices("the a movie was really quite it".split(), k=5)
        words.insert(rng.randrange(6), rng.choice(["great", "lovely"] if good else ["awful", "bad"]))
        words.append("zqcanarytext")
        rows["zqcanarycolumn_text"].append(" ".join(words))
        rows["zqcanarycolumn_label"].append("ZQCANARYLABEL_pos" if good else "ZQCANARYLABEL_neg")
    return Dataset.from_dict(rows)

def load():
    return _split(160, 1), _split(40, 2)
"""

STUDY = """
pipeline = "zqcanarymodule:load"
name = "ZQCANARYSTUDY"
task = "text-classification"
language = "en"
text_column = "zqcanarycolumn_text"
label_column = "zqcanarycolumn_label"

[model]
path = "ZQCANARYCKPT"
max_length = 24

[training]
eval_interval = 5

[search_space]
learning_rate = { type = "float", low = 1e-3, high = 5e-3, log = true }
epochs = { type = "int", low = 2, high = 3 }
"""


def _write_study(folder: Path, extra: str = "") -> Path:
    from gridpoint.trainers.models import load_model
    from gridpoint.trainers.study_config import ModelSpec

    folder.mkdir(parents=True)
    (folder / "zqcanarymodule.py").write_text(PIPELINE)
    (folder / "study.toml").write_text(STUDY + extra)
    config = {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 32,
        "vocab_size": 100,
    }
    loaded = load_model(
        ModelSpec(config=config), 2, ["the movie was great zqcanarytext", "awful bad"], 0
    )
    loaded.model.save_pretrained(folder / "ZQCANARYCKPT")
    loaded.tokenizer.save_pretrained(folder / "ZQCANARYCKPT")
    return folder / "study.toml"


def _wire_bytes(caller: NodeHome, server: NodeHome, address: str) -> list[bytes]:
    """Every response the server sends: Hello, a full Sync page, an unfiltered Query."""
    credentials = grpc.ssl_channel_credentials(
        server.tls.cert_pem, caller.tls.key_pem, caller.tls.cert_pem
    )
    options = [("grpc.ssl_target_name_override", tls_hostname(server.identity.node_id))]
    calls = [
        ("/gridpoint.v1.Node/Hello", node_pb2.HelloRequest()),
        ("/gridpoint.v1.Catalog/Sync", catalog_pb2.SyncRequest(limit=5000)),
        ("/gridpoint.v1.Catalog/Query", catalog_pb2.QueryRequest(limit=1000)),
    ]
    out = []
    with grpc.secure_channel(address, credentials, options=options) as channel:
        for method, request in calls:
            body = request.SerializeToString()
            stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                method, request_serializer=None, response_deserializer=None
            )
            out.append(
                stub(
                    body,
                    metadata=((AUTH_METADATA_KEY, sign_request(caller.identity, method, body)),),
                    timeout=20,
                )
            )
    return out


def _envelopes(home: NodeHome) -> list[bytes]:
    store = open_store(home.db_url())
    try:
        return [r.envelope for r in store.query(None, limit=100_000)]
    finally:
        store.close()


def _statements(home: NodeHome) -> list[bytes]:
    store = open_store(home.db_url())
    try:
        return store.statements_after(0, 1000).envelopes
    finally:
        store.close()


def test_no_canary_leaves_the_node(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make_home: MakeHome,
    daemons: list[Daemon],
    tmp_path: Path,
) -> None:
    # Prepare: the commands run in this process (what leaves goes through the real daemons).
    a, b = make_home("A"), make_home("B")
    study = _write_study(tmp_path / "ZQCANARYPATH")
    monkeypatch.setenv("ZQ_SECRET_SETTING", CANARIES["env"])
    # Execute
    tuned = run_main(capsys, "tune", str(study), "--trials", "2", "--json", home=a.path)
    assert tuned.returncode == 0, tuned.stderr
    da, db = Daemon.start(a), Daemon.start(b)
    daemons += [da, db]
    trust(a, b, db.address)
    trust(b, a, da.address)
    [report] = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()
    sent = _wire_bytes(b, a, da.address)
    published = _envelopes(a)
    received = _envelopes(b)
    # Assert: the study really ran and really crossed, so the checks below see real bytes.
    assert report["new"] == 2 and len(published) == 2 and sorted(published) == sorted(received)
    watched = {**CANARIES, "host": socket.gethostname(), "user": getpass.getuser()}
    watched = {k: v for k, v in watched.items() if len(v) >= 4}
    blobs = {"A's catalog": published, "B's catalog": received, "A's responses": sent}
    for where, items in blobs.items():
        for blob in items:
            for kind, canary in watched.items():
                assert canary.lower().encode() not in blob.lower(), (
                    f"{kind} canary found in {where}"
                )
    # The canaries did reach the private side: the check above could have failed.
    store = open_store(a.db_url())
    detail = " ".join(repr(r) for r in store.list_private_runs())
    store.close()
    assert CANARIES["study"] in detail and CANARIES["path"] in detail
    _check_kept_shared_and_pulled_model(capsys, a, b, watched)
    # Statements and the ledger: withdrawing by the private study name sends only ids.
    withdraw = ("catalog", "withdraw", "--study", CANARIES["study"], "--json")
    withdrawn = run_main(capsys, *withdraw, home=a.path).json()
    [told] = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()
    audit = run_main(capsys, "audit", "--json", home=a.path).stdout.encode()
    assert len(withdrawn["withdrawn"]) == 2 and told["statements"] == 1
    said = _statements(a) + _statements(b)
    for blob in [*said, audit]:
        for kind, canary in watched.items():
            assert canary.lower().encode() not in blob.lower(), f"{kind} canary in {blob[:60]!r}"
    # The ledger names what left, never its bytes: no payload of any envelope is in it.
    assert not any(envelope[-64:] in audit for envelope in published)


def _model_bytes(home: NodeHome, artifact_id: str) -> dict[str, bytes]:
    """Every file of a model a home holds; of weights files only their (JSON) header, since
    random weights may hold any short byte string."""
    from gridpoint.node.artifacts import ArtifactStore

    store = open_store(home.db_url())
    try:
        artifacts = ArtifactStore(home, store)
        folder = artifacts.folder(artifacts.get(artifact_id))
    finally:
        store.close()
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            data = data[8 : 8 + int.from_bytes(data[:8], "little")]
        out[path.relative_to(folder).as_posix()] = data
    return out


def _check_kept_shared_and_pulled_model(
    capsys: pytest.CaptureFixture[str], a: NodeHome, b: NodeHome, watched: dict[str, str]
) -> None:
    [kept] = run_main(capsys, "model", "list", "--json", home=a.path).json()
    share = ("model", "share", kept["id"], "--with", b.identity.node_id)
    refused = run_main(capsys, *share, home=a.path)
    shared = run_main(capsys, *share, "--include-private", home=a.path)
    pull = ("model", "pull", kept["id"], "--from", a.identity.node_id, "--json")
    pulled = run_main(capsys, *pull, home=b.path).json()
    # Refused without the flag, naming what it would have sent; the peer's copy is the same.
    assert refused.returncode == 1 and "vocabulary learnt from the training texts" in refused.stderr
    assert "names of the training labels" in refused.stderr
    assert shared.returncode == 0 and pulled["id"] == kept["id"]
    files = {
        "A's kept model": _model_bytes(a, kept["id"]),
        "B's pulled model": _model_bytes(b, kept["id"]),
    }
    assert files["A's kept model"] == files["B's pulled model"]
    learnt = {"text", "label"}  # in the model by design; sent only with --include-private
    for where, model in files.items():
        for name, blob in model.items():
            for kind, canary in watched.items():
                if kind not in learnt:
                    assert canary.lower().encode() not in blob.lower(), f"{kind} in {where}/{name}"
    # The check above reads real bytes: the label names and the words really are there.
    kept_files = files["A's kept model"]
    assert b"ZQCANARYLABEL_pos" in kept_files["config.json"]
    assert b"zqcanarytext" in kept_files["tokenizer.json"]


@pytest.mark.parametrize("task", TASKS)
def test_no_task_input_canary_leaves_the_node(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path, task: str
) -> None:
    # Prepare: prompts and responses, entity tag names, image labels and file names all
    # carry the canary.
    a = make_home("A")
    study = write_study(tmp_path / "study", task, canary=True, name=CANARIES["study"])
    # Execute
    tuned = run_main(capsys, "tune", str(study), "--trials", "1", "--json", home=a.path)
    listed = run_main(capsys, "catalog", "query", "--json", home=a.path)
    # Assert
    assert tuned.returncode == 0, tuned.stderr
    published = _envelopes(a)
    assert len(published) == 1
    for blob in [*published, listed.stdout.encode()]:
        for canary in (CANARY, CANARIES["study"]):
            assert canary.lower().encode() not in blob.lower()
    # The owner's own terminal shows its study's name, never its data.
    assert CANARY not in tuned.stdout.lower()
    if task == "image-classification":  # the images really were files named with the canary
        assert any(CANARY in p.name for p in (tmp_path / "study" / "images").iterdir())


def _curves(home: NodeHome) -> dict[str, list[tuple[int, float]]]:
    """Every published curve point of a home's catalog, by metric: (step, value)."""
    from gridpoint.node.protocol.serde import read_stored_envelope

    out: dict[str, list[tuple[int, float]]] = {}
    for envelope in _envelopes(home):
        for point in read_stored_envelope(envelope).record.curve:
            out.setdefault(point.metric, []).append((point.step, point.value))
    return {k: sorted(v) for k, v in out.items()}


def test_no_exact_evaluation_value_leaves_a_private_study(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: the same study twice, exact and with its evaluation rows protected (training
    # stays exact, so both train the same model and the exact values are known).
    exact_home, private_home = make_home("Exact"), make_home("Private")
    exact = _write_study(tmp_path / "exact" / "ZQCANARYPATH")
    private = _write_study(
        tmp_path / "private" / "ZQCANARYPATH",
        '\n[privacy]\nepsilon = 1.0\nprotect = "evaluation"\n',
    )
    # Execute
    for study, home in ((exact, exact_home), (private, private_home)):
        tuned = run_main(capsys, "tune", str(study), "--trials", "1", "--json", home=home.path)
        assert tuned.returncode == 0, tuned.stderr
    exact_curves, private_curves = _curves(exact_home), _curves(private_home)
    # Assert: the same run (its exact training loss, unprotected here, is the same) ...
    assert private_curves["train_loss"] == exact_curves["train_loss"]
    # ... whose evaluation values left only released: every accuracy differs from the exact
    # one at its step, and nothing else measured on the evaluation rows left at all.
    steps = [s for s, _ in exact_curves["accuracy"]]
    assert [s for s, _ in private_curves["accuracy"]] == steps
    for (_, noisy), (_, exact_value) in zip(
        private_curves["accuracy"], exact_curves["accuracy"], strict=True
    ):
        assert noisy != exact_value
    assert {"eval_loss", "f1"} <= set(exact_curves)
    assert set(private_curves) == {"accuracy", "train_loss"}
    for envelope in _envelopes(private_home):
        for canary in CANARIES.values():
            assert canary.lower().encode() not in envelope.lower()
