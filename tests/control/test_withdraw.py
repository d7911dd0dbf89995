"""Withdraw: a signed tombstone takes a record back from every node that holds a copy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gridpoint.errors import NotShared, RecordError, RequestError
from gridpoint.node.artifacts import ArtifactStore
from gridpoint.node.artifacts.service import ArtifactService
from gridpoint.node.control.statements import sign_tombstones
from gridpoint.node.control.withdraw import withdraw
from gridpoint.node.tuning.warm_start import choose_priors
from gridpoint.node.ui.app import create_app
from gridpoint.schema import TaskDescriptor
from gridpoint.v1 import artifacts_pb2
from tests.artifacts.helpers import info, model_folder
from tests.control.world import World
from tests.helpers import make_record

STUDY = "0123456789abcdef0123456789abcdef"


def _trial(i: int):  # type: ignore[no-untyped-def]
    return replace(
        make_record(i), study=STUDY, objective_metric="accuracy", objective_direction="maximize"
    )


def test_a_withdrawn_record_is_gone_everywhere_and_never_comes_back(
    world: World, tmp_path: Path
) -> None:
    # Prepare: A publishes; B syncs A; C syncs only B; D (stale) syncs A once, then never.
    a, b, c, d = world.node("A"), world.node("B"), world.node("C"), world.node("D")
    world.mutual(a, b)
    world.mutual(b, c)
    world.mutual(c, d)
    world.mutual(d, a)
    world.trust(c, a)  # authors are trusted wherever their records arrive
    ids = [world.publish(a, record=_trial(i)) for i in range(3)]
    gone, kept = ids[0], ids[1:]
    world.sync(b, a)
    world.sync(c, b)
    world.sync(d, a)
    assert set(ids) <= world.ids(c) and set(ids) <= world.ids(d)
    # Execute
    done = withdraw(a.home, a.store, [gone[:10]], reason="shared by mistake")
    to_b, to_c = world.sync(b, a), world.sync(c, b)
    from_stale = world.sync(c, d)
    live = world.query(c)
    # Assert: the tombstone travelled and took the record with it, relayed by B.
    assert done.record_ids == (gone,)
    assert (to_b.statements, to_c.statements) == (1, 1)
    for node in (a, b, c):
        assert gone not in world.ids(node) and set(kept) <= world.ids(node)
        assert node.store.get_record(gone) is None
        [w] = node.store.withdrawals()
        assert (w.record_id, w.signer_id, w.reason) == (gone, a.node_id, "shared by mistake")
    # A stale node still serves it, by sync and live: it never comes back.
    assert from_stale.refused["withdrawn"] == 1 and gone not in world.ids(c)
    assert gone not in {row.record.id for row in live.rows} and live.refused >= 1
    assert set(kept) <= {row.record.id for row in live.rows}
    # Nor is it a warm-start prior, nor a page of the UI.
    priors = choose_priors(
        c.store, task=TaskDescriptor("text-classification"), objective_metric="accuracy"
    )
    assert sum(len(p.trials) for p in priors.priors) == 2
    with TestClient(
        create_app(c.home, c.store, db_url="sqlite://"), base_url="http://127.0.0.1"
    ) as ui:
        assert ui.get(f"/record/{gone}").status_code == 404
        assert gone[:12] not in ui.get("/").text and kept[0][:12] in ui.get("/").text
    # The author does not take it back either.
    with pytest.raises(RecordError, match="withdrawn by its author"):
        world.publish(a, record=_trial(0))


def test_a_tombstone_of_another_authors_record_is_refused_and_changes_nothing(
    world: World,
) -> None:
    # Prepare: B holds A's record; C (trusted by B) signs a tombstone for it.
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(b, c)
    record_id = world.publish(a)
    world.sync(b, a)
    c.store.add_statements(sign_tombstones(c.home.identity, [record_id], "forged"))
    # Execute
    report = world.sync(b, c)
    # Assert
    assert report.refused["bad-statement"] == 1 and report.statements == 0
    assert record_id in world.ids(b)
    assert b.store.count_statements() == 0 and b.store.withdrawals() == []


def test_a_tombstone_for_a_record_not_held_yet_applies_when_it_arrives(world: World) -> None:
    # Prepare: C hears of the tombstone from B before the record reaches it (from D).
    a, b, c, d = world.node("A"), world.node("B"), world.node("C"), world.node("D")
    for x, y in ((a, b), (b, c), (c, d), (d, a)):
        world.mutual(x, y)
    world.trust(c, a)
    record_id = world.publish(a)
    world.sync(d, a)
    withdraw(a.home, a.store, [record_id])
    world.sync(b, a)
    # Execute
    told = world.sync(c, b)
    offered = world.sync(c, d)
    # Assert
    assert told.statements == 1 and record_id not in world.ids(c)
    [w] = c.store.withdrawals()
    assert w.record_id == record_id and not w.held
    assert offered.refused["withdrawn"] == 1 and record_id not in world.ids(c)


def test_withdraw_takes_only_this_nodes_records(world: World) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    theirs = world.publish(b)
    world.sync(a, b)
    with pytest.raises(RecordError, match="only its author can withdraw it"):
        withdraw(a.home, a.store, [theirs])
    with pytest.raises(RequestError, match="nothing to withdraw"):
        withdraw(a.home, a.store, [], filter_text="task.type = 'causal-lm'")
    assert theirs in world.ids(a) and a.store.count_statements() == 0


def test_withdraw_by_study_and_filter(world: World) -> None:
    a = world.node("A")
    in_study = world.publish(a, record=_trial(1))
    lm = world.publish(a, record=make_record(2, task_type="causal-lm"))
    other = world.publish(a, record=make_record(3))
    from gridpoint.node.pseudonyms import pseudonym

    named = replace(_trial(4), study=pseudonym(a.home.secret, "study", "tiny-sentiment"))
    by_name = world.publish(a, record=named)
    done = withdraw(
        a.home, a.store, [], study="tiny-sentiment", filter_text="task.type = 'causal-lm'"
    )
    assert set(done.record_ids) == {by_name, lm}
    assert world.ids(a) == {in_study, other}


def test_a_withdrawn_records_kept_model_is_no_longer_served(world: World, tmp_path: Path) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    record_id = world.publish(a)
    artifacts = ArtifactStore(a.home, a.store)
    model = artifacts.add(
        model_folder(tmp_path / "m", size=1000), info(record_id=record_id, readers=(b.node_id,))
    )
    service = ArtifactService(artifacts, 4 * 1024 * 1024)
    request = artifacts_pb2.GetManifestRequest(artifact_id=model.id)
    assert service.get_manifest(b.node_id, request).manifest.payload
    withdraw(a.home, a.store, [record_id])
    with pytest.raises(NotShared):
        service.get_manifest(b.node_id, request)
