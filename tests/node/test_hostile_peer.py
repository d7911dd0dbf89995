"""Issue 13 end to end: real daemons (on SQLite and PostgreSQL) against a misbehaving trusted
peer — a real gRPC server over mutual TLS serving crafted pages — and against bad requests.

Kept few and fast: the logic of each defect is covered in process (test_hostile_sync.py,
test_limits.py, test_fuzz.py); here the daemon, its sync loop, TLS pinning and the CLI are real.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gridpoint.node.home import NodeHome
from gridpoint.node.logs import LOG_BURST
from gridpoint.node.protocol.methods import QUERY, SYNC
from gridpoint.node.protocol.request_auth import AUTH_METADATA_KEY, sign_request
from gridpoint.node.protocol.tls import make_tls_material, private_key_pem, tls_hostname
from gridpoint.node.store.sql_store import open_store
from gridpoint.v1 import catalog_pb2, envelope_pb2, records_pb2
from tests.cli_main import run_main
from tests.helpers import (
    CraftedPeer,
    Daemon,
    MakeHome,
    crafted_envelope,
    make_record,
    pin,
    set_sync,
    signed_records,
    trust,
    worst_filter,
)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def ids_in(url: str) -> set[str]:
    store = open_store(url)
    try:
        return {r.id for r in store.query(None, limit=100_000)}
    finally:
        store.close()


def every_second(home: NodeHome) -> None:
    set_sync(home, interval_s=1.0)


def sync_events(daemon: Daemon, peer: NodeHome) -> int:
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    return sum(1 for e in lines if e["event"] == "sync" and e["peer"] == peer.identity.node_id)


def test_a_hostile_peer_neither_stops_floods_nor_taints_sync_with_an_honest_one(
    db_url: str, make_home: MakeHome, daemons: list[Daemon], tmp_path: Path
) -> None:
    # Prepare: B is honest (30 records). H serves, once: a record over BIGINT, B's genuine
    # record padded with an unsigned field, two records by X (not trusted yet), five records
    # with 100 KB names, one good record; then always "more" with a cursor that never moves.
    b, h, c, x = make_home("B"), make_home("H"), make_home("C"), make_home("X")
    every_second(c)
    store_b = open_store(b.db_url())
    honest = signed_records(b, 30)
    store_b.add_records(honest)
    pin(store_b, c, "127.0.0.1:9")
    store_b.close()

    def too_big(m: records_pb2.RunRecord) -> None:
        m.model.num_parameters = 2**63

    def long_name(m: records_pb2.RunRecord) -> None:
        m.model.base = "x" * 100_000

    only_relayed = signed_records(b, 1, start=500)[0]
    padded = envelope_pb2.SignedEnvelope.FromString(only_relayed.envelope + b"\x9a\x06\x03bad")
    by_x = signed_records(x, 2)
    good_h = signed_records(h, 1)[0]
    first = [
        crafted_envelope(h, 1, mutate=too_big),
        padded,
        *(envelope_pb2.SignedEnvelope.FromString(r.envelope) for r in by_x),
        *(crafted_envelope(h, i, mutate=long_name) for i in range(5)),
        envelope_pb2.SignedEnvelope.FromString(good_h.envelope),
    ]

    def pages(cursor: str) -> catalog_pb2.SyncPage:
        if cursor == "":
            return catalog_pb2.SyncPage(envelopes=first, next_cursor="1", has_more=True)
        return catalog_pb2.SyncPage(envelopes=first[-1:], next_cursor="1", has_more=True)

    hostile = CraftedPeer(h, c, pages)
    db = Daemon.start(b)
    daemons.append(db)
    store_c = open_store(db_url)
    pin(store_c, b, db.address)
    pin(store_c, h, hostile.address)
    store_c.close()
    try:
        dc = Daemon.start(c, "--db", db_url)
        daemons.append(dc)
        # Execute: let C's sync loop run; then trust X, the author H relayed.
        expected = {r.id for r in honest} | {only_relayed.id, good_h.id}
        wait_for(lambda: expected <= ids_in(db_url))
        store_c = open_store(db_url)
        pin(store_c, x, "127.0.0.1:9")
        store_c.close()
        wait_for(lambda: {r.id for r in by_x} <= ids_in(db_url))
        rounds = sync_events(dc, b)
        wait_for(lambda: sync_events(dc, b) >= rounds + 2)
    finally:
        hostile.stop()
    # Assert: everything honest arrived, nothing refused or unsigned was kept, C is still up.
    assert ids_in(db_url) == expected | {r.id for r in by_x}
    store_c = open_store(db_url)
    kept = store_c.get_record(only_relayed.id)
    store_c.close()
    assert kept is not None and kept.envelope == only_relayed.envelope
    assert dc.process.poll() is None
    log = dc.log()
    assert "cursor did not advance" in log
    refusals = [line for line in log.splitlines() if '"records refused"' in line]
    assert 1 <= len(refusals) <= LOG_BURST and '"invalid-envelope": 6' in refusals[0]
    assert max(len(line) for line in log.splitlines()) < 2000 and len(log) < 100_000
    assert str(c.path) not in log


def _call(
    channel: grpc.Channel, client: NodeHome, method: str, body: bytes
) -> tuple[grpc.StatusCode, bytes, float]:
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        method, request_serializer=None, response_deserializer=None
    )
    start = time.perf_counter()
    try:
        answer = call(
            body,
            metadata=((AUTH_METADATA_KEY, sign_request(client.identity, method, body)),),
            timeout=30,
        )
    except grpc.RpcError as err:
        return err.code(), b"", time.perf_counter() - start
    return grpc.StatusCode.OK, answer, time.perf_counter() - start


def _channel(
    client: NodeHome,
    server: NodeHome,
    address: str,
    cert: bytes | None = None,
    key: bytes | None = None,
) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        server.tls.cert_pem, key or client.tls.key_pem, cert or client.tls.cert_pem
    )
    return grpc.secure_channel(
        address,
        credentials,
        options=[
            ("grpc.ssl_target_name_override", tls_hostname(server.identity.node_id)),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )


def test_bad_queries_and_cursors_are_invalid_arguments_and_the_daemon_keeps_serving(
    db_url: str, make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: A (on SQLite or PostgreSQL) holds ordinary, mixed-type and large records.
    a, b = make_home("A"), make_home("B")
    store = open_store(db_url)
    from gridpoint.node.catalog import sign_record
    from gridpoint.schema import CurvePoint

    bases = ["bert-base-uncased", "BERT-large", "roberta-base"]
    store.add_records(
        [sign_record(a.identity, make_record(i, base=s)) for i, s in enumerate(bases)]
    )
    curve = tuple(CurvePoint(i, "accuracy", 0.5) for i in range(7000))
    big = make_record(9, base="big-model")
    store.add_records(
        [
            sign_record(
                a.identity, type(big)(**{**big.__dict__, "curve": curve, "study": f"big{i:05d}"})
            )
            for i in range(40)
        ]
    )
    pin(store, b, "127.0.0.1:9")
    before = store.count_records()
    store.close()
    da = Daemon.start(a, "--db", db_url)
    daemons.append(da)

    def query(
        text: str, order_by: str = "", limit: int = 100
    ) -> tuple[grpc.StatusCode, bytes, float]:
        body = catalog_pb2.QueryRequest(filter=text, order_by=order_by, limit=limit)
        return _call(channel, b, QUERY, body.SerializeToString())

    def sync(cursor: str) -> grpc.StatusCode:
        return _call(channel, b, SYNC, catalog_pb2.SyncRequest(cursor=cursor).SerializeToString())[
            0
        ]

    with _channel(b, a, da.address) as channel:
        # Execute
        refused = [
            query("(" * 500 + "kind = 'trial'" + ")" * 500),
            query(" or ".join(["kind = 'trial'"] * 1001)),
            query("task.num_labels IN (" + ", ".join(["2"] * 70_000) + ")"),
            query("model.base LIKE '" + "%" * 60_000 + "'"),
            query("task.type = 'a\x00b'"),
        ]
        cursors = [sync(c) for c in ["²", "١٢", "9" * 5000, str(2**64)]]
        worst = query(worst_filter(), limit=1000)
        like = query("model.base LIKE 'BERT%'")
        everything = query("", limit=1000)
    # Assert
    assert [code for code, _, _ in refused] == [grpc.StatusCode.INVALID_ARGUMENT] * 5
    assert max(seconds for _, _, seconds in refused) < 1
    assert cursors == [grpc.StatusCode.INVALID_ARGUMENT] * 4
    assert worst[0] == grpc.StatusCode.OK and worst[2] < 5
    found = catalog_pb2.QueryResponse.FromString(like[1]).envelopes
    assert like[0] == grpc.StatusCode.OK and len(found) == 2
    answer = catalog_pb2.QueryResponse.FromString(everything[1])
    assert everything[0] == grpc.StatusCode.OK and 3 < len(answer.envelopes) < 43
    assert len(everything[1]) <= a.config.security.max_message_bytes
    assert da.process.poll() is None
    store = open_store(db_url)
    assert store.count_records() == before
    store.close()


def test_peer_add_never_replaces_a_trusted_peer_without_replace(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: A trusts B. E's certificate (its own key) claims B's node id.
    a, b, e = make_home("A"), make_home("B"), make_home("E")
    forged = make_tls_material(b.identity.node_id, "E")
    e.tls_key_path.write_bytes(forged.key_pem)
    e.tls_cert_path.write_bytes(forged.cert_pem)
    e = NodeHome(e.path)
    db, de = Daemon.start(b), Daemon.start(e)
    daemons += [db, de]
    trust(a, b, db.address)
    # Execute
    taken = run_main(
        capsys, "peer", "add", de.address, "--fingerprint", e.tls_fingerprint, home=a.path
    )
    kept = run_main(capsys, "peer", "list", "--json", home=a.path).json()
    replaced = run_main(
        capsys,
        "peer",
        "add",
        de.address,
        "--fingerprint",
        e.tls_fingerprint,
        "--replace",
        home=a.path,
    )
    # Assert
    assert taken.returncode == 1 and len(taken.stderr.strip().splitlines()) == 1
    assert (
        "already trusted with another certificate" in taken.stderr and "--replace" in taken.stderr
    )
    assert [(p["address"], p["fingerprint"]) for p in kept] == [(db.address, b.tls_fingerprint)]
    assert replaced.returncode == 0, replaced.stderr
    assert f"fingerprint: {b.tls_fingerprint} -> {e.tls_fingerprint}" in replaced.stdout
    assert [
        p["fingerprint"] for p in run_main(capsys, "peer", "list", "--json", home=a.path).json()
    ] == [e.tls_fingerprint]


def _mint(issuer: NodeHome, node_id: str) -> tuple[bytes, bytes]:
    """A client certificate for node_id, signed by issuer's pinned (self-signed CA) certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = serialization.load_pem_private_key(issuer.tls.key_pem, password=None)
    ca = x509.load_pem_x509_certificate(issuer.tls.cert_pem)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def test_a_certificate_minted_by_a_pinned_peer_cannot_speak_for_another(
    make_home: MakeHome, daemons: list[Daemon]
) -> None:
    # Prepare: A pins T and T2. T's TLS key mints a client certificate naming T2.
    a, t, t2 = make_home("A"), make_home("T"), make_home("T2")
    store = open_store(a.db_url())
    pin(store, t, "127.0.0.1:9")
    pin(store, t2, "127.0.0.1:9")
    store.close()
    da = Daemon.start(a)
    daemons.append(da)
    cert, key = _mint(t, t2.identity.node_id)
    body = catalog_pb2.SyncRequest(cursor="").SerializeToString()
    # Execute: requests signed by T2's identity key, over the minted and the real certificate.
    with _channel(t2, a, da.address, cert=cert + t.tls.cert_pem, key=key) as minted:
        over_minted = _call(minted, t2, SYNC, body)[0]
    with _channel(t2, a, da.address) as real:
        over_real = _call(real, t2, SYNC, body)[0]
    # Assert
    assert over_minted == grpc.StatusCode.UNAUTHENTICATED
    assert over_real == grpc.StatusCode.OK
    assert "not the one pinned" in da.log()


def test_inputs_that_crashed_the_cli_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], db_url: str, make_home: MakeHome
) -> None:
    a = make_home("A")
    record = {
        "task": {"type": "text-classification", "size_bucket": "1k-10k"},
        "model": {"num_parameters": 2**63},
        "hyperparameters": {},
        "curve": [],
        "metrics": {},
    }
    path = a.path / "run.json"
    path.write_text(json.dumps(record))
    runs = [
        run_main(capsys, "--db", db_url, "publish", str(path), home=a.path),
        run_main(capsys, "--db", db_url, "catalog", "query", "--limit", "-1", home=a.path),
        run_main(
            capsys,
            "--db",
            db_url,
            "catalog",
            "query",
            "(" * 600 + "kind = 'x'" + ")" * 600,
            home=a.path,
        ),
    ]
    for run in runs:
        assert run.returncode == 1 and run.stderr.startswith("error: "), run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert "model.num_parameters" in runs[0].stderr
