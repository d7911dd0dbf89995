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
