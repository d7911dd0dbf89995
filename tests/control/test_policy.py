"""The sharing policy: who receives what, by sync, live query and relay, and its mistakes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gridpoint.errors import PolicyError
from gridpoint.node.cli.main import main
from gridpoint.node.control.explain import explain
from gridpoint.node.control.policy import PolicySource, parse_policy
from gridpoint.node.control.sharing import NOT_IN_GROUPS, PARTS_CUT, VARIANT
from gridpoint.node.protocol.envelope import content_id
from gridpoint.node.protocol.serde import decode_record
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.schema import RunRecord
from gridpoint.v1 import catalog_pb2, envelope_pb2
from tests.control.world import World
from tests.helpers import make_record
from tests.inprocess import Node

SECRET_STUDY = "consortium-study"


def _policy(groups: str, rules: str, default: str = "all") -> str:
    return f'\n[sharing]\ndefault = "{default}"\n\n[sharing.groups]\n{groups}\n{rules}'


def _in_study(node: Node, i: int, name: str = SECRET_STUDY) -> RunRecord:
    return replace(
        make_record(i), study=pseudonym(node.home.secret, "study", name), parents=("ab" * 32,)
    )


def _set_policy(node: Node, text: str) -> None:
    """Replaces the node's [sharing] section (the running service follows the file)."""
    config = node.home.config_path.read_text().split("\n[sharing]")[0]
    node.home.config_path.write_text(config + text)


def _share_study_only_with(node: Node, member: Node) -> None:
    """node's policy: SECRET_STUDY goes to group x = {member} only (rule "x-only")."""
    _set_policy(
        node,
        _policy(
            f'x = ["{member.node_id}"]',
            f'[[sharing.rules]]\nname = "x-only"\nstudies = ["{SECRET_STUDY}"]\ngroups = ["x"]\n',
        ),
    )


def test_a_study_shared_with_group_x_reaches_nobody_outside_it(world: World) -> None:
    # Prepare: A shares its study with group x = {B} only; C is outside x and trusts A and B.
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    for x, y in ((a, b), (a, c), (b, c)):
        world.mutual(x, y)
    _share_study_only_with(a, b)
    secret = {world.publish(a, record=_in_study(a, i)) for i in range(3)}
    public = world.publish(a, 10)
    # Execute
    world.sync(b, a)
    world.sync(c, a)
    relayed = world.sync(c, b)
    live = world.query(c)
    told = explain(a.home, a.store, c.node_id)
    # Assert: B holds the study as A's variants signed for audience [B], C holds none of it.
    at_b = {r.id: r for r in b.store.query(None, limit=100)}
    variants = [r for r in at_b.values() if r.record.audience]
    assert len(variants) == 3 and all(r.record.audience == (b.node_id,) for r in variants)
    assert all(r.signer_id == a.node_id for r in variants) and public in at_b
    assert world.ids(c) == {public}
    assert relayed.new == 0 and relayed.refused.total() == 0  # B never offered them
    assert {row.record.id for row in live.rows} == {public}
    [rule, default] = told.rules
    assert not rule.admits and rule.outcomes == {NOT_IN_GROUPS: 3}
    assert default.admits and sum(default.outcomes.values()) == 1
    assert not secret & world.ids(c)
    assert explain(a.home, a.store, b.node_id).rules[0].outcomes == {VARIANT: 3}


def test_a_live_answer_ordered_by_a_metric_is_ruled_by_the_policy_in_that_order(
    world: World,
) -> None:
    # Prepare: A shares its study with group x = {B} only, and publishes records of both
    # kinds at interleaved accuracies. (On PostgreSQL an answer ordered by a metric is the
    # metric's ranked walk, whose rows lead with a column of their own before the policy's.)
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(a, c)
    _share_study_only_with(a, b)
    for i in range(6):
        accuracy = 0.5 + i / 20
        if i % 2:
            world.publish(a, record=replace(_in_study(a, i), metrics={"accuracy": accuracy}))
        else:
            world.publish(a, record=make_record(i, accuracy=accuracy))
    # Execute
    at_c = world.query(c, "metrics.accuracy > 0", "metrics.accuracy desc")
    at_b = world.query(b, "metrics.accuracy > 0", "metrics.accuracy desc")
    # Assert: C gets the three outside the study, best first; B gets all six, best first,
    # the study's as variants for audience [B].
    assert [r.record.record.metrics["accuracy"] for r in at_c.rows] == [0.7, 0.6, 0.5]
    assert [r.record.record.metrics["accuracy"] for r in at_b.rows] == [
        0.75,
        0.7,
        0.65,
        0.6,
        0.55,
        0.5,
    ]
    assert [r.record.record.audience for r in at_b.rows][::2] == [(b.node_id,)] * 3


def test_a_receiver_refuses_a_record_whose_audience_leaves_it_out(world: World) -> None:
    # Prepare: B holds A's variant for audience [B]; rogue peer E serves it to C as is.
    a, b, c, e = world.node("A"), world.node("B"), world.node("C"), world.node("E")
    world.mutual(a, b)
    world.mutual(c, e)
    world.trust(c, a)
    _set_policy(a, _policy(f'x = ["{b.node_id}"]', '[[sharing.rules]]\ngroups = ["x"]\n'))
    world.publish(a)
    world.sync(b, a)
    [variant] = b.store.query(None, limit=10)
    page = catalog_pb2.SyncPage(
        envelopes=[envelope_pb2.SignedEnvelope.FromString(variant.envelope)], next_cursor="1"
    )
    world.crafted[e.node_id] = lambda *_: page.SerializeToString()
    # Execute
    report = world.sync(c, e)
    # Assert
    assert report.refused["outside-audience"] == 1 and world.ids(c) == set()


def test_a_rule_can_leave_parts_out_and_never_trims_another_authors_record(
    world: World,
) -> None:
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(a, c)
    world.trust(b, c)
    theirs = world.publish(c, 5)
    world.sync(a, c)
    _set_policy(a, _policy("", '[[sharing.rules]]\ngroups = ["all"]\nparts = ["search_space"]\n'))
    original = _in_study(a, 1, "s")
    world.publish(a, record=original)
    # Execute
    world.sync(b, a)
    told = explain(a.home, a.store, b.node_id)
    # Assert
    [got] = b.store.query(None, limit=10)
    assert got.record == replace(
        original, curve=(), parents=(), model=replace(original.model, base="")
    )
    assert got.record.audience == () and theirs not in world.ids(b)
    assert told.rules[0].outcomes == {VARIANT: 1, PARTS_CUT: 1}


def test_a_policy_edit_takes_effect_without_a_restart(world: World) -> None:
    # Prepare: A shares nothing (default "none"); B has synced (and received nothing).
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    _set_policy(a, _policy("", "", default="none"))
    record_id = world.publish(a)
    assert world.sync(b, a).new == 0
    # Execute: a broken edit keeps the policy in force; the fixed one widens the share.
    _set_policy(a, _policy("", '[[sharing.rules]]\ngroups = ["nobody"]\n'))
    still = world.sync(b, a)
    _set_policy(a, _policy("", "", default="all"))
    widened = world.sync(b, a)
    # Assert: B is offered the record again under the new share, same service, same cursor.
    assert still.new == 0 and still.error is None
    assert widened.new == 1 and world.ids(b) == {record_id}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_policy("x = []", '[[sharing.rules]]\ngroups = ["y"]\n'), r"line 8: .*unknown group 'y'"),
        (
            _policy(
                "", '\n[[sharing.rules]]\nname = "r"\nfilter = "task.type ="\ngroups = ["all"]\n'
            ),
            r"line 10: rule 'r': the filter does not parse: filter ends too early",
        ),
        (
            _policy("", '[[sharing.rules]]\ngroups = ["all"]\nparts = ["labels"]\n'),
            "line 9: .*parts",
        ),
        (_policy('all = ["' + "a" * 40 + '"]', ""), "line 6: group name 'all'"),
        (_policy("", "", default="some"), 'line 3: sharing.default is "all" or "none"'),
        ("\n[sharing]\nshare = 1\n", "line 3: unknown key sharing.share"),
    ],
)
def test_policy_mistakes_name_their_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text, b"s" * 32)


def test_policy_source_keeps_the_policy_in_force_when_an_edit_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_policy('x = ["' + "b" * 40 + '"]', '[[sharing.rules]]\ngroups = ["x"]\n'))
    source = PolicySource(path, b"s" * 32)
    path.write_text(_policy("", '[[sharing.rules]]\ngroups = ["x"]\nfilter = "oops"\n'))
    assert [r.groups for r in source.current().rules] == [("x",)]
    path.write_text(_policy("", ""))
    assert source.current().rules == ()


def test_policy_explain_and_check_commands(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    _set_policy(
        a,
        _policy(
            f'x = ["{b.node_id}"]',
            '[[sharing.rules]]\nname = "lm"\nfilter = "task.type = \'causal-lm\'"\ngroups = ["x"]\n',
        ),
    )
    world.publish(a, record=make_record(1, task_type="causal-lm"))
    args = ["--home", str(a.home.path), "--db", a.store.url]
    assert main([*args, "policy", "explain", "B"]) == 0
    explained = capsys.readouterr().out
    _set_policy(a, _policy("", '[[sharing.rules]]\ngroups = ["x"]\n'))
    assert main([*args, "policy", "check"]) == 1
    lines = a.home.config_path.read_text().splitlines()
    assert "in groups: x" in explained and "rule 'lm' (line" in explained
    assert "1 record(s) sent as this node's signed variant" in explained
    groups_line = lines.index('groups = ["x"]') + 1
    error = capsys.readouterr().err
    assert f"config.toml line {groups_line}: rule 'rule 1' names unknown group 'x'" in error


def test_a_variant_is_signed_once_per_share(world: World) -> None:
    a, b, c = world.node("A"), world.node("B"), world.node("C")
    world.mutual(a, b)
    world.mutual(a, c)
    _set_policy(
        a, _policy(f'x = ["{b.node_id}", "{c.node_id}"]', '[[sharing.rules]]\ngroups = ["x"]\n')
    )
    world.publish(a)
    world.sync(b, a)
    world.sync(c, a)
    [at_b], [at_c] = b.store.query(None, limit=5), c.store.query(None, limit=5)
    assert at_b.envelope == at_c.envelope
    assert at_b.record.audience == tuple(sorted((b.node_id, c.node_id)))
    message = envelope_pb2.SignedEnvelope.FromString(at_b.envelope)
    assert content_id(message.signer_id, message.payload) == at_b.id
    assert decode_record(message.payload).audience == at_b.record.audience


def test_a_peer_allowed_few_records_gets_them_all_in_one_round(world: World) -> None:
    # Prepare: B pulls pages of 5; A shares only the last 2 of 30 records.
    a, b = world.node("A"), world.node("B")
    world.mutual(a, b)
    b.home.config_path.write_text(
        b.home.config_path.read_text().replace("page_size = 500", "page_size = 5")
    )
    b = world.reload(b)
    _set_policy(
        a,
        _policy(
            "",
            '[[sharing.rules]]\nfilter = "params.seed >= 28"\ngroups = ["all"]\n',
            default="none",
        ),
    )
    for i in range(30):
        world.publish(a, i)
    shared = {
        r.id for r in a.store.query(None, limit=100) if int(r.record.hyperparameters["seed"]) >= 28
    }
    # Execute
    report = world.sync(b, a)
    # Assert
    assert report.new == 2 and world.ids(b) == shared
