"""Screening a run from elsewhere: renamed into the vocabulary, the rest reported, never dropped."""

from __future__ import annotations

from gridpoint.integrations.foreign_run import ForeignRun, screen
from gridpoint.schema import CurvePoint, SearchDimension


def _run(**kw: object) -> ForeignRun:
    return ForeignRun(source_key="test:1", study="s", state="complete", **kw)  # type: ignore[arg-type]


def test_known_names_are_renamed_and_text_numbers_read() -> None:
    screened = screen(
        _run(
            params={"lr": "3e-4", "per_device_train_batch_size": "16.0"},
            metrics={"val_acc": 0.9, "eval_loss": 0.3},
            objective_metric="val_acc",
            objective_direction="maximize",
        )
    )
    assert screened.params == {"learning_rate": 3e-4, "batch_size": 16}
    assert screened.metrics == {"accuracy": 0.9, "eval_loss": 0.3}
    assert (screened.objective_metric, screened.left_out) == ("accuracy", ())


def test_everything_outside_the_vocabulary_is_reported_with_a_reason() -> None:
    screened = screen(
        _run(
            params={"optimizer": "adamw", "batch_size": "sixteen", "epochs": 2.5},
            metrics={"gpu_mem": 3.0},
            search_space=(SearchDimension("lr", "categorical", choices=("low", "high")),),
            objective_metric="bleu",
            objective_direction="maximize",
        )
    )
    reported = {(n.kind, n.name) for n in screened.left_out}
    assert reported == {
        ("param", "optimizer"),
        ("param", "batch_size"),
        ("param", "epochs"),
        ("metric", "gpu_mem"),
        ("search_space", "lr"),
        ("objective", "bleu"),
    }
    assert screened.params == {} and screened.metrics == {} and screened.search_space == ()
    assert (screened.objective_metric, screened.objective_direction) == ("", "")


def test_a_curve_keeps_the_last_value_of_a_step_and_is_ordered_by_step() -> None:
    screened = screen(
        _run(
            curve=(
                CurvePoint(2, "val_acc", 0.7),
                CurvePoint(1, "val_acc", 0.5),
                CurvePoint(1, "val_acc", 0.6),
                CurvePoint(1, "loss", 0.9),
                CurvePoint(1, "throughput", 10.0),
            )
        )
    )
    assert screened.curve == (
        CurvePoint(1, "accuracy", 0.6),
        CurvePoint(1, "train_loss", 0.9),
        CurvePoint(2, "accuracy", 0.7),
    )
    assert [(n.kind, n.name) for n in screened.left_out] == [("metric", "throughput")]
