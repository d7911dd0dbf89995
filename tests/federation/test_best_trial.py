"""`fed host --from-best-trial`: the federation uses the best trial's hyperparameters and
links that trial's record as its parent (lineage), through the node's real Optuna storage."""

from __future__ import annotations

import optuna
import pytest

from gridpoint.errors import ConfigError
from gridpoint.federation.host import best_trial_params
from gridpoint.node.store.base import PrivateRun, RunDetail
from gridpoint.node.store.sql_store import normalize_db_url, open_store
from gridpoint.trainers.study_config import load_study_config
from tests.helpers import ROOT, MakeHome

STUDY = ROOT / "examples" / "tiny-study.toml"


def test_the_best_trial_gives_its_parameters_and_its_record(make_home: MakeHome) -> None:
    home = make_home("H")
    study = load_study_config(STUDY)
    tuned = optuna.create_study(
        study_name=study.name,
        storage=normalize_db_url(home.studies_url()),
        direction="maximize",
    )
    space: dict[str, optuna.distributions.BaseDistribution] = {
        "learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)
    }
    for lr, value in [(1e-4, 0.6), (3e-3, 0.9), (1e-5, 0.5)]:
        tuned.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": lr}, distributions=space, value=value
            )
        )
    store = open_store(home.db_url())
    try:
        for number in range(3):
            store.add_run(PrivateRun(study.name, number, RunDetail("complete"), f"{number:064x}"))
    finally:
        store.close()

    params, record = best_trial_params(home, None, study)

    assert params["learning_rate"] == pytest.approx(3e-3)
    assert record == f"{1:064x}"
    # The parameters the study does not search keep the study's fixed values.
    fixed = study.fixed_params()
    assert fixed
    assert {k: params[k] for k in fixed} == fixed


def test_a_study_never_tuned_here_is_a_clear_error(make_home: MakeHome) -> None:
    home = make_home("H")
    with pytest.raises(ConfigError, match="no complete trial on this node"):
        best_trial_params(home, None, load_study_config(STUDY))
