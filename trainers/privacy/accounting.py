"""A private study's accounting, by Google's dp-accounting: every mechanism is a DpEvent.

A trial that trains with DP-SGD is `SelfComposed(PoissonSampled(q, Gaussian(sigma)), steps)`;
its released evaluation values are `SelfComposed(Gaussian(sigma_e), releases)` (sigma_e in
units of the values' sensitivity). With `publish = "all"` the study is the composition of its
trials; each trial's noise is calibrated (dp-accounting's `calibrate_dp_mechanism`) so that
the trials already planned plus this one repeated for every trial still to come spend exactly
the budget: the last trial closes it, whatever the hyperparameters of the others (a trial
that is pruned or fails is still charged in full). With `publish = "best"` the study runs a
Poisson-distributed number of identical trials and publishes only the best:
`RepeatAndSelectDpEvent` (Papernot & Steinke, ICLR 2022).

The training and the evaluation rows are different rows, each split with its own accountant;
the study's epsilon is the larger of the two. Thread-safe: trials on several devices plan at
once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gridpoint.errors import TrainerError
from gridpoint.trainers.privacy.spec import PrivacySpec

__all__ = [
    "SplitAccountant",
    "calibrate_noise",
    "StudyAccountant",
    "TrialNoise",
    "draw_trials",
    "dpsgd_event",
    "epsilon_of",
    "release_event",
    "release_noise",
    "select_best_event",
]

#: Poisson-distributed repetitions (shape infinity) for "publish the best".
POISSON_SHAPE = math.inf


class _DroppedOrders(logging.Filter):
    """Drops dp-accounting's (absl) warning that an RDP order did not converge and is left
    out of the epsilon: expected whenever a noise multiplier is small (the calibration
    probes them, DP-SGD trials compose them), it changes no figure we report (epsilon is the
    minimum over the orders that remain) and told the user of `tune` and `fed` nothing.
    Every other absl message still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("_compute_log_a_frac failed to converge")


_DROPPED_ORDERS = _DroppedOrders()


def _dpa() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:  # pragma: no cover - an install problem, said in one line
        raise TrainerError(
            "privacy mode needs dp-accounting: pip install 'gridpoint[train]'"
        ) from exc
    # On the logger itself, once (adding the same filter again is a no-op): composing and
    # reading epsilon happen in several threads at once, where a logger level switched for
    # the duration of one call would be switched back under another's feet.
    logging.getLogger("absl").addFilter(_DROPPED_ORDERS)
    return dp_accounting


def dpsgd_event(sample_rate: float, noise_multiplier: float, steps: int) -> Any:
    """The DpEvent of DP-SGD: steps Poisson-sampled Gaussian steps."""
    dpa = _dpa()
    step = dpa.PoissonSampledDpEvent(sample_rate, dpa.GaussianDpEvent(noise_multiplier))
    return dpa.SelfComposedDpEvent(step, steps)


def release_event(noise_multiplier: float, releases: int) -> Any:
    """The DpEvent of releases Gaussian releases, each with noise_multiplier x sensitivity."""
    dpa = _dpa()
    return dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(noise_multiplier), releases)


def select_best_event(trial: Any, mean_trials: float) -> Any:
    """A Poisson number of repetitions of trial (mean mean_trials), only the best released."""
    from dp_accounting.dp_event import RepeatAndSelectDpEvent

    return RepeatAndSelectDpEvent(trial, float(mean_trials), POISSON_SHAPE)


def _accountant(kind: str) -> Any:
    dpa = _dpa()
    if kind == "pld":
        from dp_accounting.pld import pld_privacy_accountant

        return pld_privacy_accountant.PLDAccountant()
    return dpa.rdp.RdpAccountant()


def epsilon_of(event: Any, delta: float, accountant: str = "rdp") -> float:
    """The epsilon at delta of event, by the named accountant."""
    counter = _accountant(accountant)
    counter.compose(event)
    return float(counter.get_epsilon(delta))


#: How far below RDP's multiplier a PLD calibration looks (each step halves it).
_HALVINGS = 3


def calibrate_noise(
    make: Callable[[float], Any], epsilon: float, delta: float, kind: str = "rdp"
) -> float:
    """The smallest noise multiplier z whose event make(z) spends at most epsilon at delta."""
    from dp_accounting import mechanism_calibration as mc

    bracket: Any = mc.LowerEndpointAndGuess(1e-3, 1.0)
    if kind == "pld":
        # The PLD of a tiny multiplier is enormous (a search from 1e-3 asked for 226 GiB).
        # PLD is the tighter accountant, so RDP's answer is enough noise: search below it.
        upper = calibrate_noise(make, epsilon, delta, "rdp")
        lower = upper / 2
        for _ in range(_HALVINGS):
            if epsilon_of(make(lower), delta, kind) > epsilon:
                break
            upper, lower = lower, lower / 2
        else:
            return upper  # still enough noise, if more than the least that would do
        bracket = mc.ExplicitBracketInterval(lower, upper)
    sigma = float(
        mc.calibrate_dp_mechanism(
            lambda: _accountant(kind), make, epsilon, delta, bracket, tol=1e-4
        )
    )
    # Brent's method lands within tol of the boundary, on either side: step to the safe one.
    while epsilon_of(make(sigma), delta, kind) > epsilon:
        sigma *= 1.001
    return sigma


def release_noise(epsilon: float, delta: float, releases: int, accountant: str = "rdp") -> float:
    """The noise multiplier of each of `releases` alike Gaussian releases spending (epsilon,
    delta) together: what a study of that many evaluations, all alike, gave each one."""
    return calibrate_noise(lambda s: release_event(s, max(releases, 1)), epsilon, delta, accountant)


class SplitAccountant:
    """The mechanisms run on one split (training or evaluation rows) of a study."""

    def __init__(self, spec: PrivacySpec, trials: int) -> None:
        self._spec, self._trials = spec, trials
        self._events: list[Any] = []
        self._lock = threading.Lock()

    @property
    def events(self) -> list[Any]:
        with self._lock:
            return list(self._events)

    def plan(self, make_trial: Callable[[float], Any]) -> float:
        """The next trial's noise multiplier (its event recorded as spent now).

        make_trial: the trial's event for a noise multiplier. TrainerError when every
        planned trial has been charged already.
        """
        dpa, spec = _dpa(), self._spec
        with self._lock:
            left = self._trials - len(self._events)
            if left < 1:
                raise TrainerError(
                    f"the study's privacy budget covers {self._trials} trial(s); all are spent"
                )
            past = list(self._events)

            def whole(sigma: float) -> Any:
                rest = dpa.SelfComposedDpEvent(make_trial(sigma), left)
                return dpa.ComposedDpEvent([*past, rest])

            sigma = calibrate_noise(whole, spec.epsilon, spec.delta, spec.accountant)
            self._events.append(make_trial(sigma))
            return sigma

    def plan_best(self, make_trial: Callable[[float], Any]) -> float:
        """The one noise multiplier of every trial of a "publish the best" study."""
        spec = self._spec
        sigma = calibrate_noise(
            lambda s: select_best_event(make_trial(s), self._trials),
            spec.epsilon,
            spec.delta,
            "rdp",
        )
        with self._lock:
            self._events = [select_best_event(make_trial(sigma), self._trials)]
        return sigma

    def epsilon(self) -> float:
        """What the events recorded so far spend, at the study's delta (0: none yet)."""
        events = self.events
        if not events:
            return 0.0
        return epsilon_of(_dpa().ComposedDpEvent(events), self._spec.delta, self._spec.accountant)


@dataclass(frozen=True)
class TrialNoise:
    """A trial's noise: DP-SGD's multiplier and the evaluation release's (None: not protected)."""

    training: float | None
    evaluation: float | None


class StudyAccountant:
    """A private study's accounting: one SplitAccountant per protected split."""

    def __init__(self, spec: PrivacySpec, trials: int) -> None:
        self.spec = spec
        self.trials = trials
        self.training = SplitAccountant(spec, trials) if spec.training else None
        self.evaluation = SplitAccountant(spec, trials) if spec.evaluation else None
        # "publish the best" runs identical trials: their one calibration, kept.
        self._best: dict[tuple[float, int, int], TrialNoise] = {}

    def plan_trial(self, sample_rate: float, steps: int, releases: int) -> TrialNoise:
        """Noise for a trial of steps DP-SGD steps at sample_rate, releasing releases values."""
        best = self.spec.publish == "best"
        if best and (sample_rate, steps, releases) in self._best:
            return self._best[(sample_rate, steps, releases)]
        training = evaluation = None
        if self.training is not None:

            def train(s: float) -> Any:
                return dpsgd_event(sample_rate, s, steps)

            training = self.training.plan_best(train) if best else self.training.plan(train)
        if self.evaluation is not None:

            def evaluate(s: float) -> Any:
                return release_event(s, releases)

            evaluation = (
                self.evaluation.plan_best(evaluate) if best else self.evaluation.plan(evaluate)
            )
        noise = TrialNoise(training, evaluation)
        if best:
            self._best[(sample_rate, steps, releases)] = noise
        return noise

    def epsilon(self) -> float:
        """The study's epsilon so far: the larger of its splits' (rows are in one split)."""
        splits = [s for s in (self.training, self.evaluation) if s is not None]
        return max((s.epsilon() for s in splits), default=0.0)


def draw_trials(mean: int) -> int:
    """How many trials a "publish the best" study runs: Poisson with the given mean.

    Drawn from the operating system's entropy: the count is part of the mechanism.
    """
    import numpy as np

    seed = int.from_bytes(os.urandom(16))
    return int(np.random.default_rng(seed).poisson(mean))
