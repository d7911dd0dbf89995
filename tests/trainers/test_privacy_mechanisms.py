"""The privacy mode's maths: accounting by dp-accounting, calibrated noise, released values.

Each test checks behaviour against the library's own figures or against statistics of the
mechanism's output, never against numbers written here by hand.
"""

from __future__ import annotations

import logging
import math
import statistics

import dp_accounting
import pytest
from dp_accounting import rdp

from gridpoint.errors import StudyConfigError, TrainerError
from gridpoint.trainers.privacy.accounting import (
    StudyAccountant,
    calibrate_noise,
    dpsgd_event,
    epsilon_of,
    release_event,
    select_best_event,
)
from gridpoint.trainers.privacy.release import EvaluationRelease
from gridpoint.trainers.privacy.spec import PrivacySpec, privacy_from_table


def _rdp_epsilon(event: object, delta: float) -> float:
    accountant = rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def test_epsilon_of_a_composition_is_dp_accountings_own() -> None:
    # Prepare: three DP-SGD trials of different batch sizes and lengths, and releases.
    events = [dpsgd_event(0.02, 1.1, 300), dpsgd_event(0.05, 0.9, 120), release_event(20.0, 15)]
    composed = dp_accounting.ComposedDpEvent(events)
    # Execute / Assert: our figure is the library's, for RDP and PLD alike.
    assert epsilon_of(composed, 1e-5, "rdp") == pytest.approx(_rdp_epsilon(composed, 1e-5))
    from dp_accounting.pld import pld_privacy_accountant

    pld = pld_privacy_accountant.PLDAccountant()
    pld.compose(composed)
    assert epsilon_of(composed, 1e-5, "pld") == pytest.approx(pld.get_epsilon(1e-5))


@pytest.mark.parametrize("releases", [1, 3, 40])
def test_pld_calibration_is_at_most_rdps_noise_and_spends_at_most_the_budget(
    releases: int,
) -> None:
    # Prepare: releases alike, at a budget where small multipliers would be tried first.
    def make(z: float) -> object:
        return release_event(z, releases)

    # Execute
    by_pld, by_rdp = calibrate_noise(make, 4.0, 1e-5, "pld"), calibrate_noise(make, 4.0, 1e-5)
    # Assert: within the budget by PLD's own figure, no more noise than RDP needs, and the
    # least that does: 1% less noise spends more than the budget.
    assert epsilon_of(make(by_pld), 1e-5, "pld") <= 4.0
    assert by_pld <= by_rdp
    assert epsilon_of(make(by_pld * 0.99), 1e-5, "pld") > 4.0


def test_a_calibration_after_events_spent_is_the_one_over_their_composition() -> None:
    # Prepare: a DP-SGD trial and releases already spent, and the next trial's event.
    spent = [dpsgd_event(0.02, 1.1, 300), release_event(20.0, 15)]

    def make(z: float) -> object:
        return dpsgd_event(0.05, z, 100)

    def whole(z: float) -> object:
        return dp_accounting.ComposedDpEvent([*spent, make(z)])

    # Execute
    after = calibrate_noise(make, 4.0, 1e-5, spent=spent)
    # Assert: the noise calibrated over the whole composition, within the budget and the
    # least that is: 1% less spends more.
    assert after == pytest.approx(calibrate_noise(whole, 4.0, 1e-5), rel=1e-3)
    assert epsilon_of(whole(after), 1e-5) <= 4.0 < epsilon_of(whole(after * 0.99), 1e-5)


def test_pld_calibrates_after_events_that_spend_more_than_the_budget_by_rdps_figure() -> None:
    # Prepare: a release calibrated by PLD to 3.8 of a budget of 4, which by RDP's looser
    # figure is already past 4 (where a PLD study's last trials stand).
    first = dp_accounting.GaussianDpEvent(
        calibrate_noise(dp_accounting.GaussianDpEvent, 3.8, 1e-5, "pld")
    )
    assert epsilon_of(first, 1e-5, "rdp") > 4.0

    def whole(z: float) -> object:
        return dp_accounting.ComposedDpEvent([first, release_event(z, 3)])

    # Execute
    z = calibrate_noise(lambda s: release_event(s, 3), 4.0, 1e-5, "pld", spent=[first])
    # Assert: within the budget by PLD, and the least noise that is.
    assert epsilon_of(whole(z), 1e-5, "pld") <= 4.0 < epsilon_of(whole(z * 0.99), 1e-5, "pld")


def test_a_budget_already_spent_is_a_clear_error() -> None:
    # Prepare: a release with little noise, far past a budget of 1.
    spent = [dp_accounting.GaussianDpEvent(0.5)]
    # Execute / Assert
    with pytest.raises(TrainerError, match="keeps within the privacy budget; raise epsilon"):
        calibrate_noise(lambda s: release_event(s, 1), 1.0, 1e-5, spent=spent)


def test_a_budget_that_no_small_noise_exceeds_gets_the_least_noise_considered() -> None:
    # Execute
    least = calibrate_noise(lambda s: release_event(s, 1), 1e7, 1e-5)
    # Assert: the lowest multiplier the search tries (1e-3 <= 2^-9), within the budget.
    assert 1e-3 <= least < 2e-3
    assert epsilon_of(release_event(least, 1), 1e-5) <= 1e7


def test_pld_is_never_probed_at_tiny_noise_rdps_multiplier_stands_there() -> None:
    # Prepare: a budget (a peer's record may state any) whose noise is below 0.25, where one
    # release's PLD would take gigabytes as the noise shrinks.
    def make(z: float) -> object:
        return release_event(z, 1)

    # Execute
    by_pld, by_rdp = calibrate_noise(make, 50.0, 1e-5, "pld"), calibrate_noise(make, 50.0, 1e-5)
    # Assert: RDP's answer, within the budget by RDP's own figure.
    assert by_pld == by_rdp < 0.25
    assert epsilon_of(make(by_rdp), 1e-5) <= 50.0


def test_rdp_orders_dropped_for_a_small_noise_are_not_warned_other_absl_warnings_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: DP-SGD at noise 0.5 and rate 0.3, where fractional RDP orders do not converge
    # (dp-accounting warns through absl for each one it leaves out).
    caplog.set_level(logging.WARNING, logger="absl")
    # Execute
    epsilon = epsilon_of(dpsgd_event(0.3, 0.5, 10), 1e-5)
    logging.getLogger("absl").warning("another absl warning")
    # Assert: the figure is still the library's; only the other warning was logged.
    assert epsilon == pytest.approx(_rdp_epsilon(dpsgd_event(0.3, 0.5, 10), 1e-5))
    assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["another absl warning"]


def test_a_study_spends_its_whole_budget_and_not_more_whatever_its_trials() -> None:
    # Prepare: four trials with different batch sizes (sample rates) and lengths.
    spec = PrivacySpec(epsilon=4.0, delta=1e-5, protect="training")
    accountant = StudyAccountant(spec, trials=4)
    shapes = [(0.01, 400), (0.05, 60), (0.02, 150), (0.1, 20)]
    # Execute
    sigmas = [accountant.plan_trial(q, steps, 1).training for q, steps in shapes]
    # Assert: the composition of what actually ran is the budget, by dp-accounting itself.
    assert all(s is not None for s in sigmas)
    events = [dpsgd_event(q, s or 0.0, steps) for (q, steps), s in zip(shapes, sigmas, strict=True)]
    spent = _rdp_epsilon(dp_accounting.ComposedDpEvent(events), 1e-5)
    assert 0.97 * spec.epsilon <= spent <= spec.epsilon
    assert accountant.epsilon() == pytest.approx(spent)
    # A fifth trial would pass the budget: refused.
    with pytest.raises(TrainerError, match="budget covers 4 trial"):
        accountant.plan_trial(0.01, 100, 1)


def test_more_trials_in_the_same_budget_means_more_noise_per_trial() -> None:
    spec = PrivacySpec(epsilon=2.0, delta=1e-5, protect="training")
    sigmas = [StudyAccountant(spec, trials=n).plan_trial(0.02, 200, 1).training for n in (1, 4, 16)]
    assert sigmas[0] is not None and sigmas[0] < sigmas[1] < sigmas[2]  # type: ignore[operator]


def test_publishing_only_the_best_costs_less_than_publishing_every_trial() -> None:
    # Prepare: the same trial mechanism, run ten times on average.
    trial = dpsgd_event(0.05, 1.5, 100)
    # Execute
    every = _rdp_epsilon(dp_accounting.SelfComposedDpEvent(trial, 10), 1e-5)
    best = _rdp_epsilon(select_best_event(trial, 10), 1e-5)
    one = _rdp_epsilon(trial, 1e-5)
    # Assert: Papernot & Steinke's repeat-and-select lies between one run and all ten.
    assert one < best < every
    # And calibrated to one budget, "best" trials take less noise than "all" trials.
    all_spec = PrivacySpec(epsilon=3.0, delta=1e-5, protect="training")
    best_spec = PrivacySpec(epsilon=3.0, delta=1e-5, protect="training", publish="best")
    sigma_all = StudyAccountant(all_spec, 10).plan_trial(0.05, 100, 1).training
    sigma_best = StudyAccountant(best_spec, 10).plan_trial(0.05, 100, 1).training
    assert sigma_best is not None and sigma_all is not None and sigma_best < sigma_all
    spent = _rdp_epsilon(select_best_event(dpsgd_event(0.05, sigma_best, 100), 10), 1e-5)
    assert 0.97 * 3.0 <= spent <= 3.0


def test_training_and_evaluation_rows_are_accounted_apart() -> None:
    spec = PrivacySpec(epsilon=1.0, delta=1e-5, protect="both")
    accountant = StudyAccountant(spec, trials=2)
    noise = [accountant.plan_trial(0.05, 40, 5) for _ in range(2)]
    assert all(n.training is not None and n.evaluation is not None for n in noise)
    assert accountant.training is not None and accountant.evaluation is not None
    # Each split spends the budget on its own rows; the study states the larger.
    assert accountant.training.epsilon() <= 1.0 and accountant.evaluation.epsilon() <= 1.0
    assert accountant.epsilon() == max(
        accountant.training.epsilon(), accountant.evaluation.epsilon()
    )


def test_released_accuracy_is_unbiased_with_the_calibrated_spread() -> None:
    # Prepare: 300 evaluation rows, noise multiplier 12 (in units of the 1/n sensitivity).
    spec = PrivacySpec(epsilon=1.0, delta=1e-5, protect="evaluation")
    release = EvaluationRelease(spec, noise=12.0, eval_rows=300)
    # Execute: release the same exact accuracy many times.
    values = [release({"accuracy": 0.6, "f1": 0.55})["accuracy"] for _ in range(4000)]
    # Assert: mean and spread are the mechanism's (within sampling error), F1 never leaves.
    expected = 12.0 / 300
    assert statistics.fmean(values) == pytest.approx(0.6, abs=4 * expected / 4000**0.5)
    assert statistics.stdev(values) == pytest.approx(expected, rel=0.08)
    assert release({"accuracy": 0.6, "f1": 0.55}).keys() == {"accuracy"}
    assert len(set(values)) == len(values)  # no two releases alike: fresh noise each time


def test_released_values_stay_in_range_and_training_loss_never_leaves_protected_rows() -> None:
    spec = PrivacySpec(epsilon=1.0, delta=1e-5, protect="both")
    release = EvaluationRelease(spec, noise=500.0, eval_rows=10)
    values = [release({"accuracy": 0.99, "train_loss": 0.1})["accuracy"] for _ in range(200)]
    assert all(0.0 <= v <= 1.0 for v in values) and min(values) == 0.0 and max(values) == 1.0
    assert "train_loss" not in release({"accuracy": 0.5, "train_loss": 0.1})
    # Training rows protected, evaluation rows not: exact evaluation values, no train loss.
    training = EvaluationRelease(PrivacySpec(1.0, 1e-5, "training"), None, 10)
    assert training({"accuracy": 0.5, "f1": 0.4, "train_loss": 0.3}) == {"accuracy": 0.5, "f1": 0.4}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"delta": 1e-5}, "privacy.epsilon: is required"),
        ({"epsilon": 0}, "privacy.epsilon: must be more than 0"),
        ({"epsilon": 1, "delta": 0.5}, "privacy.delta"),
        ({"epsilon": 1, "protect": "labels"}, "privacy.protect: must be one of"),
        ({"epsilon": 1, "publish": "best", "accountant": "pld"}, "'best' is accounted by"),
        ({"epsilon": 1, "budget": 3}, "privacy.budget: unknown key"),
    ],
)
def test_a_wrong_privacy_table_is_refused_naming_its_key(
    table: dict[str, object], problem: str
) -> None:
    with pytest.raises(StudyConfigError, match=problem):
        privacy_from_table(table)


def test_privacy_can_be_turned_off_by_the_study() -> None:
    assert privacy_from_table({"enabled": False}) is None


def test_the_accountant_charges_the_sampling_and_steps_opacus_runs() -> None:
    import torch
    from opacus.data_loader import DPDataLoader

    from gridpoint.trainers.privacy.dpsgd import poisson_schedule

    for rows, batch in ((160, 16), (600, 32), (1097, 24), (7, 8)):
        loader = DPDataLoader.from_data_loader(
            torch.utils.data.DataLoader([(torch.zeros(1),)] * rows, batch_size=batch)  # type: ignore[arg-type]
        )
        assert poisson_schedule(rows, batch) == (loader.sample_rate, len(loader))


BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "vocab_size": 100,
}
WORDS = ["good", "fine", "great", "bad", "awful", "poor", "the", "movie", "was", "very"]
PAIRS = [
    (" ".join(WORDS[(i * 7 + j) % 10] for j in range(2 + i % 6)), str(i % 2)) for i in range(40)
]


def test_a_run_the_noise_drowns_is_warned_and_one_that_can_learn_is_not() -> None:
    from gridpoint.trainers.privacy.dpsgd import poisson_schedule
    from gridpoint.trainers.privacy.guidance import advice, noise_to_signal

    # bench/RESULTS.md: MiniLM on 1,097 rows, batch 64. LoRA 8 (74,498 trainable parameters)
    # for 54 steps learnt at noise 0.11, nothing at 0.224 or at epsilon 8's 0.70; the head
    # alone (770) for 360 steps learnt at epsilon 3's 1.81 and barely at epsilon 1's 4.42.
    q, _ = poisson_schedule(1097, 64)
    learnt = [(0.11, 74_498, 54), (1.807, 770, 360)]
    not_learnt = [(0.224, 74_498, 54), (0.70, 74_498, 54), (4.42, 770, 360)]
    for sigma, trainable, steps in learnt:
        assert advice(sigma, q, 1097, trainable, steps) is None
    for sigma, trainable, steps in not_learnt:
        warning = advice(sigma, q, 1097, trainable, steps)
        assert warning is not None and "learn nothing" in warning and f"{trainable:,}" in warning
    # Ten times the rows at the same rate: batches ten times larger, ten times less noise.
    lora = noise_to_signal(0.70, q, 1097, 74_498, 54)
    assert noise_to_signal(0.70, q, 10_970, 74_498, 54) == pytest.approx(lora / 10)


@pytest.mark.parametrize(("lora_rank", "head_only"), [(None, False), (4, False), (None, True)])
def test_a_dp_sgd_trial_trains_on_cpu_and_hands_back_a_plain_model(
    lora_rank: int | None, head_only: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a tiny model built from a config, and its weights before training.
    import torch

    from gridpoint.trainers.finetune import FineTuneSettings, finetune
    from gridpoint.trainers.models import load_model
    from gridpoint.trainers.privacy.dpsgd import poisson_schedule
    from gridpoint.trainers.study_config import ModelSpec
    from gridpoint.trainers.tasks import task_type

    kind = task_type("text-classification")
    train, evaluation = kind.prepare(PAIRS, PAIRS[:8])
    loaded = load_model(ModelSpec(config=BERT), 2, train.texts, 0)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    settings = FineTuneSettings(
        1e-2, 8, 2, 0.0, 0.0, 3, 16, 0, lora_rank=lora_rank, device="cpu",
        head_only=head_only, dp_noise_multiplier=1.0, dp_max_grad_norm=1.0,
    )  # fmt: skip
    # Execute
    result = finetune(loaded, train, evaluation, settings)
    # Assert: the steps Opacus ran are the ones charged; the model is free of its hooks.
    assert result.steps == 2 * poisson_schedule(40, 8)[1] and result.device == "cpu"
    # Noise 1.0 over batches of 8 drowns thousands of parameters: said before training.
    assert "DP-SGD will likely learn nothing" in caplog.text
    model = loaded.model
    assert "GradSampleModule" not in type(model).__name__
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    after = model.state_dict()
    if head_only:
        # Only the head took per-example gradients and noise: the warning counts its weights,
        # every other weight is the one loaded.
        trained = {k for k in after if k.startswith("classifier.")}
        assert f"{sum(after[k].numel() for k in trained):,} trainable" in caplog.text
        assert "trainable = 'head'" not in caplog.text  # what it does already is not advised
        assert all(torch.equal(after[k], before[k]) for k in after if k not in trained)
        assert not torch.equal(after["classifier.weight"], before["classifier.weight"])
    elif lora_rank is None:
        # Full fine-tuning moved the encoder; the shared position embeddings stayed frozen.
        key = "bert.embeddings.position_embeddings.weight"
        assert torch.equal(after[key], before[key])
        layer = "bert.encoder.layer.0.attention.self.query.weight"
        assert not torch.equal(after[layer], before[layer])
    else:
        # LoRA: the base weights are untouched, only adapters (and the head) trained.
        base = "base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.weight"
        assert torch.equal(after[base], before["bert.encoder.layer.0.attention.self.query.weight"])
        # ...and both of those did train under DP-SGD: the adapters left zero, the head moved.
        adapter = "base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.default.weight"
        assert after[adapter].abs().sum() > 0
        head = "base_model.model.classifier.modules_to_save.default.weight"
        assert not torch.equal(after[head], before["classifier.weight"])


def test_a_batch_the_sampling_draws_empty_is_a_noise_only_step_not_a_crash() -> None:
    # Prepare: one example a batch in expectation over 40 (q = 1/40): each of an epoch's 40
    # Poisson batches is empty with probability (39/40)^40, about 0.36, so an epoch draws
    # some (all 40 non-empty: about 1 in 10^8). A transformer cannot take an empty batch.
    import torch

    from gridpoint.trainers.finetune import FineTuneSettings, finetune
    from gridpoint.trainers.models import load_model
    from gridpoint.trainers.privacy.dpsgd import poisson_schedule
    from gridpoint.trainers.study_config import ModelSpec
    from gridpoint.trainers.tasks import task_type

    kind = task_type("text-classification")
    train, evaluation = kind.prepare(PAIRS, PAIRS[:8])
    loaded = load_model(ModelSpec(config=BERT), 2, train.texts, 0)
    head = loaded.model.classifier.weight.detach().clone()
    settings = FineTuneSettings(
        1e-2, 1, 1, 0.0, 0.0, 40, 16, 0, device="cpu", head_only=True,
        dp_noise_multiplier=1.0, dp_max_grad_norm=1.0,
    )  # fmt: skip
    # Execute
    result = finetune(loaded, train, evaluation, settings)
    # Assert: every step the accountant charges was taken, and the training loss is an
    # average over the batches that had examples.
    assert result.steps == poisson_schedule(len(PAIRS), 1)[1] == 40
    assert math.isfinite(result.metrics["train_loss"])
    assert not torch.equal(loaded.model.classifier.weight, head)
