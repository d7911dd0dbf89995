"""Server-side paging (the store's offset) and the UI's import graph, without a browser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gridpoint.node.catalog import sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.store.query_filter import parse_filter, parse_order_by
from gridpoint.node.store.sql_store import SqlStore
from tests.helpers import loaded_by, make_record


@pytest.mark.parametrize("order", ["", "metrics.accuracy desc", "params.learning_rate asc"])
def test_pages_of_an_answer_join_up_to_the_whole_answer(
    store: SqlStore,
    make_home: Callable[[str], NodeHome],
    order: str,
) -> None:
    # Prepare: records with and without the sort metric (sorted by a metric, those without it
    # come from a second statement: a page may straddle both).
    home = make_home("Pager")
    records = [
        make_record(i, accuracy=0.5 + i / 100, learning_rate=1e-5 * (i % 7 + 1)) for i in range(17)
    ]
    records += [replace(make_record(100 + i), metrics={"eval_loss": 0.3}) for i in range(5)]
    store.add_records([sign_record(home.identity, r) for r in records])
    where, order_by = parse_filter("kind = 'trial'"), parse_order_by(order)
    # Execute
    whole = [s.id for s in store.query(where, limit=1000, order_by=order_by)]
    paged = []
    for offset in range(0, 30, 4):
        paged += [s.id for s in store.query(where, limit=4, order_by=order_by, offset=offset)]
    # Assert
    assert len(whole) == 22 and paged == whole


def test_the_ui_never_loads_the_training_stack() -> None:
    statements = "import gridpoint.node.ui.app, gridpoint.node.ui.serve, gridpoint.node.cli.plot"
    assert loaded_by(statements, ("torch", "transformers", "optuna", "flwr")) == []


def test_studies_are_read_from_an_optuna_storage_on_postgresql(pg_url: str) -> None:
    import optuna

    from gridpoint.node.ui.studies import list_studies, optuna_url, read_study

    # Prepare: a study as `tune` keeps it beside a PostgreSQL store (same database).
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = optuna_url(pg_url)
    study = optuna.create_study(study_name="pg-study", storage=url, direction="minimize")
    for value in (0.5, 0.3, 0.4):
        trial = study.ask()
        trial.suggest_categorical("optimizer", ["adamw", "sgd"])
        study.tell(trial, value)
    # Execute
    view = read_study(url, "pg-study")
    # Assert
    assert list_studies(url) == ["pg-study"]
    assert view is not None and not view.maximize
    assert [t.value for t in view.complete] == [0.5, 0.3, 0.4]
    assert {t.params["optimizer"] for t in view.trials} <= {"adamw", "sgd"}


def test_a_studys_warm_start_reports_are_kept_one_per_run(tmp_path: Path) -> None:
    from gridpoint.node.study_reports import (
        DimensionRow,
        PriorRow,
        WarmStartReport,
        load_reports,
        report_path,
        save_report,
    )

    save_report(tmp_path, "my study/1", WarmStartReport("rgpe", study_weight=0.4))
    save_report(tmp_path, "my study/1", WarmStartReport("rgpe", study_weight=0.7))
    assert [r.study_weight for r in load_reports(tmp_path, "my study/1")] == [0.4, 0.7]
    assert load_reports(tmp_path, "another") == []
    # A prior's per-dimension matching survives the round trip.
    row = PriorRow(
        "p",
        "s",
        "k",
        "K",
        4,
        True,
        dimensions=(DimensionRow("lr", "learning_rate", "normalized name"),),
    )
    save_report(tmp_path, "with dims", WarmStartReport("rgpe", priors=(row,)))
    [kept] = load_reports(tmp_path, "with dims")
    assert kept.priors == (row,)
    # The file is named by a hash: a study name never becomes a path.
    assert report_path(tmp_path, "my study/1").parent == tmp_path / "warm-start"


def test_known_names_skip_scan_finds_every_name_and_honours_the_limit(
    store: SqlStore,
    make_home: Callable[[str], NodeHome],
) -> None:
    home = make_home("Names")
    records = [make_record(i) for i in range(5)]
    records.append(replace(make_record(9), metrics={"f1": 0.5, "zz_last": 1.0}))
    store.add_records([sign_record(home.identity, r) for r in records])
    assert store.known_names("metrics") == {"accuracy", "eval_loss", "f1", "zz_last"}
    assert store.known_names("params") == {"batch_size", "learning_rate", "optimizer", "seed"}
    assert store.known_names("metrics", limit=2) == {"accuracy", "eval_loss"}
