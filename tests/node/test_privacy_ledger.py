"""A record's privacy guarantee on the wire and in the store; the budget ledger's rules.

Real SQLite stores in tmp_path, the real serde: the guarantee signs with the record and
survives encoding; a record without one encodes to the bytes it always did; the ledger
refuses a charge past the budget without writing anything, and settling never raises a charge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gridpoint.errors import PrivacyBudgetExceeded, RecordError
from gridpoint.node.protocol.serde import decode_record, encode_record
from gridpoint.node.store.query_filter import parse_filter
from gridpoint.node.store.sql_privacy import PrivacyRelease
from gridpoint.node.store.sql_store import open_store
from gridpoint.schema import PrivacyGuarantee, record_from_json, record_to_json
from tests.helpers import MakeHome
from tests.node.test_run_record import MINIMAL

GUARANTEE = PrivacyGuarantee(epsilon=4.0, delta=1e-5, protected="both", accountant="rdp")


def test_the_guarantee_travels_with_the_record_and_exact_records_keep_their_bytes() -> None:
    # Prepare
    exact = record_from_json(MINIMAL)
    private = dataclasses.replace(exact, privacy=GUARANTEE)
    # Execute
    decoded = decode_record(encode_record(private))
    # Assert: the guarantee comes back as signed; an exact record's bytes are a prefix-free
    # subset (field 19 absent), so its id is what it was before the field existed.
    assert decoded.privacy == GUARANTEE and decoded == private
    assert decode_record(encode_record(exact)).privacy is None
    assert encode_record(private).startswith(encode_record(exact))
    assert record_from_json(record_to_json(private)) == private
    assert "privacy" not in record_to_json(exact)


@pytest.mark.parametrize(
    ("field", "value"),
    [("epsilon", 0.0), ("delta", 0.5), ("protected", "labels"), ("accountant", "basic")],
)
def test_an_impossible_guarantee_is_refused_naming_its_field(field: str, value: object) -> None:
    data = {**MINIMAL, "privacy": {**dataclasses.asdict(GUARANTEE), field: value}}
    with pytest.raises(RecordError, match=f"privacy.{field}"):
        record_from_json(data)


def test_records_are_found_by_their_epsilon(tmp_path: Path) -> None:
    # Prepare: one exact record and two private ones, signed and stored.
    from gridpoint.node.catalog import publish
    from gridpoint.node.protocol.identity import NodeIdentity

    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    identity = NodeIdentity.generate()
    exact = record_from_json(MINIMAL)
    for record in (
        exact,
        dataclasses.replace(exact, privacy=GUARANTEE),
        dataclasses.replace(exact, privacy=dataclasses.replace(GUARANTEE, epsilon=1.0)),
    ):
        publish(store, identity, record)
    # Execute
    found = {
        text: sorted(
            r.record.privacy.epsilon if r.record.privacy else -1.0
            for r in store.query(parse_filter(text), limit=10)
        )
        for text in ("privacy.epsilon <= 4", "privacy.epsilon < 2", "privacy.protected = ''")
    }
    store.close()
    # Assert: an exact record has no epsilon, so no epsilon bound admits it.
    assert found == {
        "privacy.epsilon <= 4": [1.0, 4.0],
        "privacy.epsilon < 2": [1.0],
        "privacy.protected = ''": [-1.0],
    }


def _release(epsilon: float, pipeline: str = "p" * 32) -> PrivacyRelease:
    return PrivacyRelease(pipeline, "s" * 32, epsilon, 1e-5, "both", "rdp")


def test_the_ledger_refuses_a_charge_past_the_budget_and_writes_nothing(tmp_path: Path) -> None:
    # Prepare
    store = open_store(f"sqlite:///{tmp_path / 'catalog.db'}")
    first = store.charge_privacy(_release(6.0), budget_epsilon=10.0)
    # Execute / Assert: 6 + 5 > 10 refused with the numbers; another pipeline is apart.
    with pytest.raises(PrivacyBudgetExceeded, match="spent epsilon 6 of 10.*would take it to 11"):
        store.charge_privacy(_release(5.0), budget_epsilon=10.0)
    store.charge_privacy(_release(5.0, pipeline="q" * 32), budget_epsilon=10.0)
    assert [r.epsilon for r in store.privacy_releases("p" * 32)] == [6.0]
    # Settling lowers a charge to what was spent, never raises it; then 6 - 3 frees room.
    store.settle_privacy(first, 9.0)
    assert store.privacy_releases("p" * 32)[0].epsilon == 6.0
    store.settle_privacy(first, 3.0)
    store.charge_privacy(_release(5.0), budget_epsilon=10.0)
    ledger = store.privacy_releases("p" * 32)
    store.close()
    assert [(r.epsilon, r.state) for r in ledger] == [(3.0, "settled"), (5.0, "charged")]


def test_a_study_that_dies_mid_run_keeps_its_full_charge(
    make_home: MakeHome, tmp_path: Path
) -> None:
    # Prepare: a private study file (nothing of it runs here) and a node with a budget.
    from gridpoint.node.tuning.privacy import charged, ledger_report, pipeline_key
    from gridpoint.trainers.study_config import load_study_config
    from tests.node.test_tune_privacy import _set_budget, _study

    home = make_home("A")
    _set_budget(home, 20.0)
    config = load_study_config(_study(tmp_path / "study"))
    store = open_store(home.db_url())
    # Execute: the run ends abruptly before the accountant says what it spent.
    with pytest.raises(KeyboardInterrupt), charged(home, store, config):
        raise KeyboardInterrupt
    # ... and a second run settles to what it spent.
    with charged(home, store, config) as spent:
        spent[0] = 2.5
    store.close()
    report = ledger_report(home)
    # Assert: the first is charged in full (over-counted, never under); the total adds both.
    assert [(r.epsilon, r.state) for r in report.releases] == [(8.0, "charged"), (2.5, "settled")]
    [total] = report.totals
    assert total.epsilon == 10.5 and total.pipeline == pipeline_key(home, config)
