"""Real daemons on 127.0.0.1 with ephemeral ports: trust, sync, relay, live query, refusals."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gridpoint.node.catalog import sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request
from gridpoint.node.protocol.tls import tls_hostname
from gridpoint.node.store.sql_store import open_store
from gridpoint.v1 import catalog_pb2, envelope_pb2
from tests.cli_main import run_main
from tests.helpers import (
    ROOT,
    Daemon,
    MakeHome,
    cli,
    loaded_by,
    make_record,
    signed_records,
    trust,
)

SYNC = "/gridpoint.v1.Catalog/Sync"
QUERY = "/gridpoint.v1.Catalog/Query"


def db_args(home: NodeHome, url: str | None) -> list[str]:
    return ["--db", url] if url else []


def ids_in(home: NodeHome, url: str | None = None) -> set[str]:
    store = open_store(home.db_url(url))
    try:
        return {r.id for r in store.query(None, limit=100_000)}
    finally:
        store.close()


def _stored_count(home: NodeHome) -> int:
    """How many records the home's SQLite store holds, read without opening the store."""
    try:
        with closing(sqlite3.connect(f"file:{home.sqlite_path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.OperationalError:  # locked by the writer, or not created yet: look again
        return 0


@pytest.mark.parametrize("b_backend", ["sqlite", "postgresql"])
def test_records_relayed_through_a_peer_stay_verified_as_their_authors(
    capsys: pytest.CaptureFixture[str],
    make_home: MakeHome,
    daemons: list[Daemon],
    request: pytest.FixtureRequest,
    b_backend: str,
) -> None:
    # Prepare: A publishes; B (on SQLite or PostgreSQL) pulls from A; C trusts A and B.
    b_db = request.getfixturevalue("pg_url") if b_backend == "postgresql" else None
    a, b, c = make_home("A"), make_home("B"), make_home("C")
    da, db, dc = Daemon.start(a), Daemon.start(b, *db_args(b, b_db)), Daemon.start(c)
    daemons += [da, db, dc]
    for x, y, addr in [
        (b, a, da.address),
        (a, b, db.address),
        (c, a, da.address),
        (c, b, db.address),
        (b, c, dc.address),
    ]:
        if x is c and y is b:  # the one `peer add` of the suite through a real CLI process
            added = cli("peer", "add", addr, "--fingerprint", y.tls_fingerprint, home=x.path)
            assert added.returncode == 0, added.stderr
        else:
            trust(x, y, addr) if x is not b else _trust_db(capsys, x, y, addr, b_db)
    published = set()
    for i in range(3):
        path = a.path / f"run{i}.json"
        path.write_text(json.dumps(_json_record(i)))
        published.add(run_main(capsys, "publish", str(path), "--json", home=a.path).json()["id"])
    # Execute
    [b_report] = run_main(
        capsys,
        *db_args(b, b_db),
        "catalog",
        "sync",
        "--peer",
        a.identity.node_id,
        "--json",
        home=b.path,
    ).json()
    da.stop()
    c_sync = run_main(capsys, "catalog", "sync", "--json", home=c.path)
    # Assert: A is down, so C's sync fails (exit 1) yet takes A's records from B.
    assert (b_report["new"], b_report["refused"]) == (3, 0)
    assert c_sync.returncode == 1, c_sync.stderr
    by_peer = {r["peer"]: r for r in json.loads(c_sync.stdout)}
    assert by_peer[b.identity.node_id]["new"] == 3 and by_peer[b.identity.node_id]["error"] is None
    assert "did not answer" in by_peer[a.identity.node_id]["error"]
    rows = run_main(
        capsys, "catalog", "query", "metrics.accuracy >= 0", "--json", home=c.path
    ).json()
    assert {r["id"] for r in rows} == published
    assert {r["signer"] for r in rows} == {a.identity.node_id}


def _trust_db(
    capsys: pytest.CaptureFixture[str], x: NodeHome, y: NodeHome, addr: str, url: str | None
) -> None:
    result = run_main(
        capsys,
        *db_args(x, url),
        "peer",
        "add",
        addr,
        "--fingerprint",
        y.tls_fingerprint,
        home=x.path,
    )
    assert result.returncode == 0, result.stderr


def _json_record(i: int) -> dict[str, object]:
    return {
        "task": {
            "type": "text-classification",
            "num_labels": 2,
            "size_bucket": "1k-10k",
            "language": "en",
        },
        "model": {"base": "bert-base-uncased"},
        "hyperparameters": {"learning_rate": 1e-5 * (i + 1), "batch_size": 32},
        "curve": [{"step": 100, "metric": "accuracy", "value": 0.5}],
        "metrics": {"accuracy": 0.6 + i / 10},
    }


def test_wrong_fingerprint_or_unreachable_peer_stores_nothing(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, b = make_home("A"), make_home("B")
    da = Daemon.start(a)
    daemons.append(da)
    wrong = run_main(
        capsys, "peer", "add", da.address, "--fingerprint", b.tls_fingerprint, home=b.path
    )
    da.stop()
    unreachable = run_main(
        capsys, "peer", "add", da.address, "--fingerprint", a.tls_fingerprint, home=b.path
    )
    assert wrong.returncode == 1 and "not the fingerprint given" in wrong.stderr
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert run_main(capsys, "peer", "list", "--json", home=b.path).json() == []


def test_untrusted_and_tampered_records_in_a_page_are_refused_the_rest_stored(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: B's catalog holds its own records, one tampered, and one by X, whom C does not trust.
    b, c, x = make_home("B"), make_home("C"), make_home("X")
    store = open_store(b.db_url())
    good = signed_records(b, 4)
    tampered = sign_record(b.identity, make_record(99))
    env = envelope_pb2.SignedEnvelope.FromString(tampered.envelope)
    env.payload = env.payload.replace(b"bert-base-uncased", b"bert-base-uncasex")
    relayed = sign_record(x.identity, make_record(50))
    store.add_records(
        [
            good[0],
            relayed,
            good[1],
            type(tampered)(**{**tampered.__dict__, "envelope": env.SerializeToString()}),
            *good[2:],
        ]
    )
    store.close()
    db, dc = Daemon.start(b), Daemon.start(c)
    daemons += [db, dc]
    trust(c, b, db.address)
    trust(b, c, dc.address)
    # Execute
    [report] = run_main(capsys, "catalog", "sync", "--json", home=c.path).json()
    # Assert
    assert report["new"] == 4 and report["refused"] == 2
    assert report["refused_reasons"] == {"untrusted-signer": 1, "bad-signature": 1}
    assert ids_in(c) == {r.id for r in good}
    assert db.process.poll() is None


def test_sync_killed_midway_resumes_without_loss_or_duplicates(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, b = make_home("A"), make_home("B")
    store = open_store(a.db_url())
    total = 4000
    store.add_records(signed_records(a, total))
    store.close()
    config = b.config_path.read_text().replace("page_size = 500", "page_size = 50")
    b.config_path.write_text(config)
    da, db = Daemon.start(a), Daemon.start(b)
    daemons += [da, db]
    trust(b, a, da.address)
    trust(a, b, db.address)
    db.stop()  # only the CLI sync writes B's store from here on
    # Execute: start a sync, kill -9 it once some pages are stored.
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridpoint", "--home", str(b.path), "catalog", "sync"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    # A bare count, not the store's decoded query: a slow poll on a loaded machine let the
    # whole sync finish between two looks.
    while time.monotonic() < deadline and proc.poll() is None:
        if _stored_count(b) >= 200:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = len(ids_in(b))
    [report] = run_main(capsys, "catalog", "sync", "--json", home=b.path).json()
    # Assert
    assert 0 < after_kill < total, "the sync must be killed midway for this test to mean anything"
    assert report["new"] == total - after_kill and report["duplicates"] == 0
    assert ids_in(b) == ids_in(a)


def test_live_query_answers_when_a_peer_is_down(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, b, c = make_home("A"), make_home("B"), make_home("C")
    da, db, dc = Daemon.start(a), Daemon.start(b), Daemon.start(c)
    daemons += [da, db, dc]
    for x, y, addr in [
        (c, a, da.address),
        (c, b, db.address),
        (a, c, dc.address),
        (b, c, dc.address),
    ]:
        trust(x, y, addr)
    for home in (a, b):
        store = open_store(home.db_url())
        store.add_records(signed_records(home, 3))
        store.close()
    live = run_main(
        capsys, "catalog", "query", "metrics.accuracy > 0", "--peers", "--json", home=c.path
    ).json()
    da.kill()
    partial = run_main(
        capsys, "catalog", "query", "metrics.accuracy > 0", "--peers", "--json", home=c.path
    )
    assert len(live) == 6 and {r["signer"] for r in live} == {
        a.identity.node_id,
        b.identity.node_id,
    }
    assert all(r["found_at"] == [r["signer"]] for r in live)
    assert partial.returncode == 0
    assert a.identity.node_id in partial.stderr and "did not answer" in partial.stderr
    assert {r["signer"] for r in json.loads(partial.stdout)} == {b.identity.node_id}


def _channel(
    client: NodeHome, server: NodeHome, address: str, max_bytes: int = 64 * 1024 * 1024
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        server.tls.cert_pem, client.tls.key_pem, client.tls.cert_pem
    )
    return grpc.secure_channel(
        address,
        credentials,
        options=[
            ("grpc.ssl_target_name_override", tls_hostname(server.identity.node_id)),
            ("grpc.max_send_message_length", max_bytes),
        ],
    )


def _status(call, *args, **kwargs) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        call(*args, **kwargs)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_bad_requests_get_a_status_and_the_daemon_stays_up(
    make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, b, stranger = make_home("A"), make_home("B"), make_home("S")
    store = open_store(a.db_url())
    store.add_records(signed_records(a, 2))
    store.close()
    da, db = Daemon.start(a), Daemon.start(b)
    daemons += [da, db]
    trust(a, b, db.address)
    before = ids_in(a)
    with _channel(b, a, da.address) as channel, _channel(stranger, a, da.address) as strange:
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            SYNC, request_serializer=None, response_deserializer=None
        )
        query: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            QUERY, request_serializer=None, response_deserializer=None
        )
        body = catalog_pb2.SyncRequest(cursor="", limit=10).SerializeToString()
        auth = sign_request(b.identity, SYNC, body)
        ok = _status(raw, body, metadata=[(AUTH_METADATA_KEY, auth)], timeout=10)
        replay = _status(raw, body, metadata=[(AUTH_METADATA_KEY, auth)], timeout=10)
        unsigned = _status(raw, body, timeout=10)
        tampered_body = catalog_pb2.SyncRequest(cursor="", limit=11).SerializeToString()
        tampered = _status(
            raw,
            tampered_body,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, SYNC, body))],
            timeout=10,
        )
        moved = _status(
            query,
            body,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, SYNC, body))],
            timeout=10,
        )
        garbage = b"\xff\xff\xff\xff"
        malformed = _status(
            raw,
            garbage,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, SYNC, garbage))],
            timeout=10,
        )
        bad_cursor_body = catalog_pb2.SyncRequest(cursor="DROP TABLE").SerializeToString()
        bad_cursor = _status(
            raw,
            bad_cursor_body,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, SYNC, bad_cursor_body))],
            timeout=10,
        )
        bad_filter_body = catalog_pb2.QueryRequest(filter="metrics.x >").SerializeToString()
        bad_filter = _status(
            query,
            bad_filter_body,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, QUERY, bad_filter_body))],
            timeout=10,
        )
        huge = b"\x0a" + b"\x80\x80\x80\x03" + b"x" * (6 * 1024 * 1024)
        oversized = _status(
            raw,
            huge,
            metadata=[(AUTH_METADATA_KEY, sign_request(b.identity, SYNC, huge))],
            timeout=10,
        )
        stranger_call = _status(
            strange.unary_unary(SYNC, request_serializer=None, response_deserializer=None),
            body,
            metadata=[(AUTH_METADATA_KEY, sign_request(stranger.identity, SYNC, body))],
            timeout=10,
        )
        health = health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert ok == grpc.StatusCode.OK
    assert replay == grpc.StatusCode.UNAUTHENTICATED
    assert unsigned == grpc.StatusCode.UNAUTHENTICATED
    assert tampered == grpc.StatusCode.UNAUTHENTICATED
    assert moved == grpc.StatusCode.UNAUTHENTICATED
    assert malformed == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_cursor == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_filter == grpc.StatusCode.INVALID_ARGUMENT
    assert oversized == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (
        stranger_call == grpc.StatusCode.UNAVAILABLE
    )  # its certificate is refused at the handshake
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert da.process.poll() is None and ids_in(a) == before
    log = da.log()
    assert "request refused" in log and "nonce seen" in log
    for secret in (a.identity_path.read_bytes(), a.tls.key_pem, a.secret.hex().encode()):
        assert secret.decode(errors="ignore") not in log


def test_sigterm_stops_the_daemon_cleanly(make_home: MakeHome) -> None:
    a = make_home("A")
    daemon = Daemon.start(a)
    try:
        assert daemon.stop() == 0
        assert '"event": "node stopped"' in daemon.log()
    finally:
        daemon.kill()


def test_daemon_never_imports_the_training_stack() -> None:
    statements = (
        "import gridpoint.node.daemon.run, gridpoint.node.cli.main, gridpoint.node.peers.sync"
    )
    assert loaded_by(statements, ("torch", "transformers", "flwr")) == []
