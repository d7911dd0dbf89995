"""Answering processes: a child answers an authenticated catalog call exactly as the daemon
would (same bytes, its ledger noted), its refusals come back as the same errors, a call never
waits on a child that is starting or dead (the daemon answers it), a dead child is started
again, and no child outlives close() or a killed daemon."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gridpoint.errors import Busy, ConfigError, FilterError, RequestError
from gridpoint.node.config import NodeConfig
from gridpoint.node.daemon import answer_processes
from gridpoint.node.daemon.answer_processes import AnswerFailed, AnswerProcesses
from gridpoint.node.daemon.service import NodeService
from gridpoint.node.home import NodeHome
from gridpoint.node.peers.grpc_transport import GrpcTransport
from gridpoint.node.protocol.methods import QUERY, SYNC
from gridpoint.node.store.models import RECORDS
from gridpoint.node.store.sql_store import SqlStore, open_store
from gridpoint.v1 import catalog_pb2
from tests.cli_main import run_main
from tests.helpers import Daemon, MakeHome, child_pids, pin, signed_records, trust


def _query(text: str = "metrics.accuracy > 0.6", limit: int = 20) -> bytes:
    return catalog_pb2.QueryRequest(filter=text, limit=limit).SerializeToString()


class _Here:
    """The daemon's own answerer, counting the calls it answered."""

    def __init__(self, service: NodeService) -> None:
        self.service = service
        self.calls = 0

    def __call__(self, method: str, caller: str, raw: bytes) -> bytes:
        self.calls += 1
        return self.service.answer(method, caller, raw)


# A's home, B (a peer A trusts), A's store, A's own answerer, the store's URL.
_Node = tuple[NodeHome, NodeHome, SqlStore, _Here, str]


@pytest.fixture
def node(make_home: MakeHome, db_url: str) -> Iterator[_Node]:
    """On SQLite and PostgreSQL: children open the daemon's database, whichever it is."""
    a, b = make_home("A"), make_home("B")
    store = open_store(db_url)
    store.add_records(signed_records(a, 30))
    pin(store, b, "127.0.0.1:1")
    yield a, b, store, _Here(NodeService(a, store)), db_url
    store.close()


def _until(what: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _answered_by_a_child(pool: AnswerProcesses, here: _Here, caller: str) -> bool:
    """Whether a call (one that matches no record, so sends and notes nothing) was answered
    by a child rather than by the daemon."""
    before = here.calls
    pool.answer(QUERY, caller, _query("metrics.accuracy > 2", 1))
    return here.calls == before


def _by_a_child(pool: AnswerProcesses, here: _Here, caller: str, raw: bytes) -> bytes:
    """A call's answer, which a child (not the daemon) gave."""
    calls = here.calls
    answer = pool.answer(QUERY, caller, raw)
    assert here.calls == calls, "the daemon answered, not a child"
    return answer


@contextlib.contextmanager
def _answering(node: _Node, count: int = 1) -> Iterator[AnswerProcesses]:
    """node's answering processes, once a child answers (until then the daemon does: no
    call waits for a child); closed after the block."""
    a, b, _, here, url = node
    pool = AnswerProcesses(a, url, count, here, here.service.policy)
    try:
        _until(lambda: _answered_by_a_child(pool, here, b.identity.node_id))
        yield pool
    finally:
        pool.close()


def _gone(pid: int) -> bool:
    """Whether no process pid runs any more (a zombie of ours counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_a_child_answers_as_the_daemon_would_and_notes_what_it_sent(
    node: _Node,
) -> None:
    _, b, store, here, _ = node
    caller = b.identity.node_id
    with _answering(node) as pool:
        by_child = _by_a_child(pool, here, caller, _query("metrics.accuracy > 0.7", 7))
    # The child noted the seven records it sent (the calls before matched none).
    assert [e.kind for e in store.ledger(peer_id=caller)] == ["answer"] * 7
    assert by_child == here.service.answer(QUERY, caller, _query("metrics.accuracy > 0.7", 7))
    assert len(catalog_pb2.QueryResponse.FromString(by_child).envelopes) == 7


def test_a_refusal_in_a_child_is_raised_in_the_daemon_as_the_same_error(
    node: _Node,
) -> None:
    _, b, _, here, _ = node
    caller = b.identity.node_id
    with _answering(node) as pool:
        calls = here.calls
        with pytest.raises(FilterError) as in_child:
            pool.answer(QUERY, caller, _query("metrics.accuracy >"))
        with pytest.raises(RequestError, match="not a valid message"):
            pool.answer(QUERY, caller, b"\xff\xff")
        assert here.calls == calls  # both refused by the child
        # The child is still there for the next call.
        assert _answered_by_a_child(pool, here, caller)
    with pytest.raises(FilterError) as in_daemon:
        here.service.answer(QUERY, caller, _query("metrics.accuracy >"))
    assert str(in_child.value) == str(in_daemon.value) and "column" in str(in_child.value)


def test_a_killed_child_leaves_its_calls_to_the_daemon_and_is_started_again(
    node: _Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b, _, here, _ = node
    caller = b.identity.node_id
    monkeypatch.setattr(answer_processes, "RESTART_AFTER_S", 0.5)
    with _answering(node) as pool:
        (first,) = pool.pids()
        os.kill(first, signal.SIGKILL)
        _until(lambda: _gone(first))
        calls = here.calls
        # The child died between two calls: this one finds its socket closed mid-call.
        answer = pool.answer(QUERY, caller, _query())
        assert here.calls == calls + 1
        assert answer == here.service.answer(QUERY, caller, _query())
        _until(lambda: _answered_by_a_child(pool, here, caller))
        (second,) = pool.pids()
    assert second != first
    assert _gone(second)


def test_close_ends_every_child(node: _Node) -> None:
    _, b, _, here, _ = node
    with _answering(node, 2) as pool:
        pids = pool.pids()
    assert len(pids) == 2 and all(_gone(p) for p in pids)
    # Closed (the daemon is stopping): what still comes is told to ask again later.
    calls = here.calls
    with pytest.raises(Busy, match="stopping"):
        pool.answer(QUERY, b.identity.node_id, _query())
    assert here.calls == calls


def test_a_child_answers_under_the_daemons_config_not_an_edit_made_since(
    node: _Node,
) -> None:
    a, b, _, here, _ = node
    caller = b.identity.node_id
    assert a.config.security.max_message_bytes > 100_000  # what the daemon loaded
    text = a.config_path.read_text()
    a.config_path.write_text(
        re.sub(r"(?m)^max_message_bytes = .*$", "max_message_bytes = 20000", text)
    )
    with _answering(node) as pool:
        by_child = _by_a_child(pool, here, caller, _query("metrics.accuracy > 0", 30))
    # The file's 20,000 bytes, less the 16 KiB a message keeps for the rest, would have left
    # room for a few of the thirty.
    assert len(catalog_pb2.QueryResponse.FromString(by_child).envelopes) == 30
    assert by_child == here.service.answer(QUERY, caller, _query("metrics.accuracy > 0", 30))


def test_a_child_that_cannot_be_started_leaves_the_answers_to_the_daemon(
    node: _Node,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, _, here, url = node
    starts: list[int] = []

    def no_processes_left(*_args: object, **_kwargs: object) -> subprocess.Popen[bytes]:
        starts.append(1)
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", no_processes_left)
    caplog.set_level(logging.INFO, logger="gridpoint")
    pool = AnswerProcesses(a, url, 1, here, here.service.policy)
    try:
        for _ in range(3):
            assert not _answered_by_a_child(pool, here, b.identity.node_id)
        assert pool.pids() == []
    finally:
        pool.close()
    # Tried once, not at every call: the next try is RESTART_AFTER_S later.
    assert len(starts) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "cannot start an answering process; the daemon answers its calls"
    ]


def test_a_child_that_cannot_open_the_store_leaves_the_answers_to_the_daemon(
    node: _Node,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    a, b, _, here, url = node
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'catalog.db'}"
    pool = AnswerProcesses(a, missing, 1, here, here.service.policy)
    try:
        (pid,) = pool.pids()
        _until(lambda: _gone(pid))
        for _ in range(3):
            assert not _answered_by_a_child(pool, here, b.identity.node_id)
    finally:
        pool.close()
    err = capfd.readouterr().err
    assert "answering process could not open the store" in err
    assert "Traceback" not in err and str(tmp_path) not in err


def _written(pid: int) -> int:
    """Bytes a process has written so far (to its socket, its log, anything)."""
    line = next(
        x for x in Path(f"/proc/{pid}/io").read_text().splitlines() if x.startswith("wchar")
    )
    return int(line.split()[1])


def test_a_daemon_answers_live_queries_from_its_answering_process_and_leaves_none_behind(
    capsys: pytest.CaptureFixture[str], make_home: MakeHome, daemons: list[Daemon]
) -> None:
    a, c = make_home("A"), make_home("C")
    text = a.config_path.read_text()
    a.config_path.write_text(text.replace("answer_processes = 0", "answer_processes = 1"))
    store = open_store(a.db_url())
    store.add_records(signed_records(a, 5))
    pin(store, c, "127.0.0.1:1")
    store.close()
    da = Daemon.start(a)
    daemons.append(da)
    trust(c, a, da.address)
    (child,) = child_pids(da.process.pid)

    def query() -> list[dict[str, object]]:
        answer: list[dict[str, object]] = run_main(
            capsys, "catalog", "query", "metrics.accuracy > 0", "--peers", "--json", home=c.path
        ).json()
        return answer

    # Asked until the child answers (the daemon does while it starts): what it wrote to the
    # daemon grows by at least the five records.
    def child_answered() -> bool:
        before = _written(child)
        live[:] = query()
        return _written(child) - before > 5 * 500

    live: list[dict[str, object]] = []
    _until(child_answered)
    assert len(live) == 5 and {r["signer"] for r in live} == {a.identity.node_id}
    # A refusal comes back through the raw handler as the status the daemon gives it.
    transport = GrpcTransport(
        c.identity, c.tls, da.address, a.identity.node_id, a.tls.cert_pem, idle_timeout_s=10
    )
    try:
        with pytest.raises(RequestError, match="refused the request: .*at column"):
            transport.query("metrics.accuracy >", 10, "")
    finally:
        transport.close()
    # Killed, the daemon leaves no answering process behind.
    os.kill(da.process.pid, signal.SIGKILL)
    da.process.wait(10)
    _until(lambda: _gone(child), timeout=10)
    # Stopped, neither; and it stops as cleanly as without one.
    again = Daemon.start(a)
    daemons.append(again)
    (child,) = child_pids(again.process.pid)
    assert again.stop() == 0
    assert _gone(child)
    assert "Traceback" not in again.log() and "answering process ended" not in again.log()


@pytest.mark.parametrize("value", ["-1", "7", "true", "1.5", '"2"'])
def test_answer_processes_outside_zero_to_six_is_a_config_error(
    make_home: MakeHome, value: str
) -> None:
    home = make_home("A")
    text = home.config_path.read_text()
    home.config_path.write_text(text.replace("answer_processes = 0", f"answer_processes = {value}"))
    with pytest.raises(ConfigError, match=r"\[node\] answer_processes must be a whole number"):
        NodeConfig.load(home.config_path)


def test_a_child_holds_the_daemons_sharing_policy_through_a_wrong_edit(
    node: _Node, capfd: pytest.CaptureFixture[str]
) -> None:
    a, b, _, here, _ = node
    caller = b.identity.node_id
    # The daemon read its policy at start; then [sharing] is edited into something wrong.
    with a.config_path.open("a") as config:
        config.write('\n[sharing]\ndefault = "maybe"\n')
    with _answering(node) as pool:
        (child,) = pool.pids()
        by_child = _by_a_child(pool, here, caller, _query("metrics.accuracy > 0", 30))
        assert pool.pids() == [child]  # started once, not again and again
    # Both keep the policy they held (the daemon's default: everything to every peer).
    assert by_child == here.service.answer(QUERY, caller, _query("metrics.accuracy > 0", 30))
    assert len(catalog_pb2.QueryResponse.FromString(by_child).envelopes) == 30
    assert "could not start" not in capfd.readouterr().err


def test_close_wakes_a_call_a_stuck_child_holds_and_tells_it_busy(
    node: _Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b, _, here, _ = node
    monkeypatch.setattr(answer_processes, "CLOSE_S", 2.0)
    outcome: list[BaseException | bytes] = []
    told_at: list[float] = []
    with _answering(node) as pool:
        (child,) = pool.pids()
        os.kill(child, signal.SIGSTOP)  # it takes the next call and never answers

        def call() -> None:
            try:
                outcome.append(pool.answer(QUERY, b.identity.node_id, _query()))
            except Busy as exc:
                outcome.append(exc)
            told_at.append(time.monotonic())

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.3)  # the call is sent, and waits on the stopped child
        closing_at = time.monotonic()
    caller.join(5)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Busy)
    # Woken at once by close(), not when the child was killed CLOSE_S later.
    assert told_at[0] - closing_at < 1.0
    assert _gone(child)


def test_a_childs_unexpected_failure_is_logged_there_with_its_class_only(
    node: _Node, capfd: pytest.CaptureFixture[str]
) -> None:
    _, b, store, here, _ = node
    # A store some other program damaged: an envelope that does not parse, which a sync page
    # (it decodes each envelope it sends) meets.
    with store.writing() as conn:
        conn.execute(RECORDS.update().values(envelope=b"\xff\xff"))
    page = catalog_pb2.SyncRequest(limit=20).SerializeToString()
    with _answering(node) as pool:
        with pytest.raises(AnswerFailed) as failed:
            pool.answer(SYNC, b.identity.node_id, page)
        assert _answered_by_a_child(pool, here, b.identity.node_id)  # still answering
    logged = [line for line in capfd.readouterr().err.splitlines() if "failed" in line]
    assert len(logged) == 1 and "request failed in an answering process" in logged[0]
    assert str(failed.value) == "DecodeError" and '"error": "DecodeError"' in logged[0]


def test_a_child_imports_nothing_from_its_working_directory(
    node: _Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, b, _, here, _ = node
    folder = tmp_path / "cwd"
    folder.mkdir()
    marker = tmp_path / "imported"
    # A module that shadows one the child imports first, in the folder it starts in.
    (folder / "json.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError\n")
    monkeypatch.chdir(folder)
    with _answering(node) as pool:
        assert _answered_by_a_child(pool, here, b.identity.node_id)
    assert not marker.exists()


def test_close_gives_stuck_children_one_deadline_in_all(
    node: _Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(answer_processes, "CLOSE_S", 1.0)
    with _answering(node, 2) as pool:
        pids = pool.pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)  # neither reads that its socket closed
        closing_at = time.monotonic()
    # Both killed at the one deadline: not one CLOSE_S after the other.
    assert time.monotonic() - closing_at < 1.8
    assert len(pids) == 2 and all(_gone(p) for p in pids)
