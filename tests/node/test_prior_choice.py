"""Which prior studies the catalog offers a new study, and why it leaves others out."""

from __future__ import annotations

from dataclasses import replace

from gridpoint.node.catalog import publish
from gridpoint.node.store.sql_store import SqlStore
from gridpoint.node.tuning.warm_start import choose_priors
from gridpoint.schema import BaseModelInfo, TaskDescriptor
from tests.helpers import MakeHome, make_record


def test_a_study_that_fine_tuned_another_way_is_left_out_with_the_reason(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: one signer's three studies of the same task and model, fine-tuned in full,
    # with LoRA and the head alone.
    home = make_home("A")
    for method in ("full", "lora", "head"):
        for i in range(3):
            record = make_record(i, accuracy=0.6 + i / 10)
            publish(
                store,
                home.identity,
                replace(
                    record,
                    study=f"study{method}",
                    model=BaseModelInfo("bert-base-uncased", "bert", method=method),
                    objective_metric="accuracy",
                    objective_direction="maximize",
                ),
            )
    task = TaskDescriptor("text-classification")
    # Execute
    lora = choose_priors(store, task=task, objective_metric="accuracy", method="lora")
    every = choose_priors(store, task=task, objective_metric="accuracy")
    # Assert: a LoRA study is offered the LoRA prior; the others are left out, saying why.
    assert [len(p.trials) for p in lora.priors] == [3]
    assert [lora.sources[p.label].study for p in lora.priors] == ["studylora"]
    reasons = {source.study: reason for source, reason in lora.left_out}
    assert reasons == {
        "studyfull": "fine-tuned 'full', this study 'lora'",
        "studyhead": "fine-tuned 'head', this study 'lora'",
    }
    # Without a method (a team's own Optuna code that does not say), every study is offered.
    assert len(every.priors) == 3 and every.left_out == []


def test_a_prior_with_another_number_of_labels_gives_its_values_but_not_its_curves(
    store: SqlStore, make_home: MakeHome
) -> None:
    # Prepare: a 2-label study's trials, each with its accuracy curve.
    home = make_home("A")
    for i in range(3):
        record = make_record(i, accuracy=0.6 + i / 10)
        publish(store, home.identity, replace(record, study="studybinary"))
    two, four = (
        TaskDescriptor("text-classification", num_labels=n, size_bucket="1k-10k", language="en")
        for n in (2, 4)
    )
    # Execute
    same = choose_priors(store, task=two, objective_metric="accuracy")
    other = choose_priors(store, task=four, objective_metric="accuracy")
    # Assert: a 2-label study's curves are offered to 2-label studies only (a 4-label study's
    # accuracy starts and climbs on another scale, so its curve pruner must not read them);
    # its values inform both.
    assert [len(t.curve) for t in same.priors[0].trials] == [2, 2, 2]
    assert [t.curve for t in other.priors[0].trials] == [(), (), ()]
    assert sorted(t.value for t in other.priors[0].trials) == [0.6, 0.7, 0.8]
    assert other.priors[0].similarity < same.priors[0].similarity
