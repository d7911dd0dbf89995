"""A private study's accounting, by Google's dp-accounting: every mechanism is a DpEvent.

A trial that trains with DP-SGD is `SelfComposed(PoissonSampled(q, Gaussian(sigma)), steps)`;
its released evaluation values are `SelfComposed(Gaussian(sigma_e), releases)` (sigma_e in
units of the values' sensitivity). With `publish = "all"` the study is the composition of its
trials; each trial's noise is calibrated (Brent's method over dp-accounting's epsilon, the
trials already planned composed once) so that the trials already planned plus this one
repeated for every trial still to come spend exactly the budget: the last trial closes it,
whatever the hyperparameters of the others (a trial that is pruned or fails is still charged
in full). With `publish = "best"` the study runs a Poisson-distributed number of identical
trials and publishes only the best: `RepeatAndSelectDpEvent` (Papernot & Steinke, ICLR 2022).

The training and the evaluation rows are different rows, each split with its own accountant;
the study's epsilon is the larger of the two. Thread-safe: trials on several devices plan at
once.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
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


def _composed(kind: str, events: Sequence[Any]) -> Any:
    """An accountant of kind that has composed events."""
    counter = _accountant(kind)
    if events:
        counter.compose(_dpa().ComposedDpEvent(list(events)))
    return counter


def _epsilon_after(spent: Any, event: Any, delta: float) -> float:
    """The epsilon at delta of event composed after what the accountant spent holds; spent is
    left as it was."""
    counter = copy.deepcopy(spent)
    counter.compose(event)
    return float(counter.get_epsilon(delta))


#: How far below its start a PLD calibration looks (each step halves the multiplier).
_HALVINGS = 3
#: The noise multipliers a calibration considers: below, nothing useful trains or is
#: released; above, the budget is too small for any mechanism to mean anything.
_LEAST_NOISE, _MOST_NOISE = 1e-3, 1e6
#: The least multiplier a PLD calibration probes: a PLD's size grows as the noise shrinks
#: (one Gaussian release's PLD took 110 MB at 0.25, 540 MB and 10 s at 0.1, 1.2 GB and 32 s
#: at 0.05 here; a search from 1e-3 once asked for 226 GiB), and a study's own budget may be
#: high. Events already spent are composed at their own multipliers, whatever they are.
_LEAST_PLD_NOISE = 0.25


def calibrate_noise(
    make: Callable[[float], Any],
    epsilon: float,
    delta: float,
    kind: str = "rdp",
    spent: Sequence[Any] = (),
) -> float:
    """The smallest noise multiplier z whose event make(z), composed after the events spent,
    spends at most epsilon at delta (TrainerError when even the most noise spends more).

    The events spent are composed once, then each probe of the search composes make(z) onto
    a copy: dp-accounting's own calibration composes everything into a fresh accountant at
    every probe, so the k-th trial of a study cost k trials' calibrations (the 20th took 20
    times the first). Its root finder is SciPy's Brent method, as in dp-accounting.
    """
    from scipy.optimize import brentq

    if kind == "pld":
        # PLD is the tighter accountant, so RDP's answer is enough noise: the search starts
        # there and looks at most _HALVINGS halvings below it, never under _LEAST_PLD_NOISE
        # (RDP's answer stands below that). RDP has no answer where what PLD calibrated
        # before already spends the budget by RDP's looser figure (a study's last trials):
        # then the search starts from 1.
        try:
            start = calibrate_noise(make, epsilon, delta, "rdp", spent)
        except TrainerError:
            start = 1.0
        if start <= _LEAST_PLD_NOISE:
            return start
        least, halvings = _LEAST_PLD_NOISE, _HALVINGS
    else:
        start, least, halvings = 1.0, _LEAST_NOISE, None
    # Composed only now: a PLD of the events spent costs seconds, for nothing where RDP's
    # answer stands.
    before = _composed(kind, spent)

    # Brent's method asks again for the bracket's ends, and a PLD probe costs seconds.
    @functools.cache
    def gap(z: float) -> float:
        return _epsilon_after(before, make(z), delta) - epsilon

    lower, upper = _bracket(gap, start, least, halvings)
    if lower == upper:
        return upper
    sigma = float(brentq(gap, lower, upper, xtol=1e-12, rtol=1e-4))
    # Brent's method lands within its tolerance of the boundary, on either side: step to
    # the safe one.
    while gap(sigma) > 0:
        sigma *= 1.001
    return sigma


def _bracket(
    gap: Callable[[float], float], z: float, least: float, halvings: int | None
) -> tuple[float, float]:
    """Noise multipliers (lower, upper) with gap(lower) > 0 >= gap(upper), from z doubled or
    halved until the sign changes (gap falls as the noise grows), never below least nor more
    than halvings halvings (None: no limit); (z, z) for the lowest z probed, within the
    budget, where either limit stops the halving first."""
    if gap(z) > 0:
        while gap(2 * z) > 0:
            z *= 2
            if z > _MOST_NOISE:
                raise TrainerError(
                    f"no noise multiplier up to {_MOST_NOISE:g} keeps within the privacy "
                    "budget; raise epsilon or lower the number of trials or rounds"
                )
        return z, 2 * z
    tries = 0
    while z / 2 >= least and (halvings is None or tries < halvings):
        if gap(z / 2) > 0:
            return z / 2, z
        z, tries = z / 2, tries + 1
    return z, z


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

            def rest(sigma: float) -> Any:
                return dpa.SelfComposedDpEvent(make_trial(sigma), left)

            sigma = calibrate_noise(
                rest, spec.epsilon, spec.delta, spec.accountant, spent=self._events
            )
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
