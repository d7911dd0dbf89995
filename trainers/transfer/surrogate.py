"""Models of one task's objective over the unit cube: priors' surfaces and the new task's GP.

A prior surface is fitted once per prior study (its trials are fixed) and only its mean is
used: it ranks configurations as that study's task would. The target model is a Gaussian
process on the new task's own observations; it gives the ensemble its uncertainty, and its
leave-one-out predictions let the ensemble judge it on the same footing as the priors.

Inputs are always points of the unit cube and objective values already copula-transformed
(lower is better). A prior released with noise (reliability.py) is fitted with that noise as
the least observation noise of its kernel. Must never see raw parameter values or raw metrics.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["PriorSurface", "TargetModel", "prior_surface"]

#: Prior studies larger than this are subsampled: a GP's cost is cubic in its points (256
#: scored 0.46 on XGBoost in bench/transfer_hpo.py, 512 scored 0.50).
MAX_PRIOR_POINTS = 512
#: Below this many trials a kernel's length scales cannot be identified (three points happily
#: "learn" that one parameter does not matter); a fixed isotropic kernel is used instead.
MIN_FIT_POINTS = 10
#: A prior surface's kernel is fitted on at most this many of its points.
FIT_POINTS = 160
SQRT5 = float(np.sqrt(5.0))
#: Iterations of the kernel fit's optimizer, at most.
OPTIMIZER_STEPS = 40
#: Fitted prior surfaces kept for reuse (a node tuning several studies from one catalog, or
#: one study's sampler rebuilt, fits each prior once).
SURFACE_CACHE = 32
#: Queries of at least this many points are remembered by each surface (the priors' own
#: configurations, scored for a study's first proposal, are the same for every study).
MEMO_FROM = 4096
#: The most observation noise a fitted kernel may find in a prior's normalized values.
NOISE_BOUND = 0.5


def _kernel(dim: int, noise: float = 1e-3, floor: float = 0.0) -> Any:
    """The fitted kernel; `floor` is the least observation noise it may fit (the known release
    noise of a private prior, in normalized units): fitted above it, never below."""
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    white = (
        WhiteKernel(floor, "fixed")
        if floor >= NOISE_BOUND
        else WhiteKernel(max(noise, floor), (max(floor, 1e-6), NOISE_BOUND))
    )
    return (
        ConstantKernel(1.0, (0.05, 20.0))
        * Matern(length_scale=np.full(dim, 0.5), length_scale_bounds=(0.02, 20.0), nu=2.5)
        + white
    )


def _fixed_kernel(floor: float = 0.0) -> Any:
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return ConstantKernel(1.0) * Matern(length_scale=0.3, nu=2.5) + WhiteKernel(max(1e-2, floor))


def _fit_gp(x: np.ndarray, z: np.ndarray, kernel: Any, optimize: bool) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor

    gp = GaussianProcessRegressor(
        kernel=kernel, normalize_y=True, optimizer=_bounded_lbfgs if optimize else None
    )
    with warnings.catch_warnings():
        # Bounds are hit routinely on tiny samples; the fit is still the best available.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, z)
    return gp


def _bounded_lbfgs(objective: Any, theta: np.ndarray, bounds: np.ndarray) -> tuple[Any, float]:
    """sklearn's L-BFGS-B fit with a cap on its iterations: the last digits of a length scale
    are not worth the time a study waits for its next proposal (most of it, uncapped)."""
    from scipy.optimize import minimize

    result = minimize(
        objective,
        theta,
        method="L-BFGS-B",
        jac=True,
        bounds=bounds,
        options={"maxiter": OPTIMIZER_STEPS},
    )
    return result.x, float(result.fun)


class PriorSurface:
    """The mean objective surface of one prior study, as a GP fitted on its trials.

    A study larger than MAX_PRIOR_POINTS is subsampled, keeping its best quarter's worth of
    trials: the optimum's region is what a prior is for. (Conditioning on 2000 XGBoost trials
    with the kernel fitted on 512 scored worse in bench/transfer_hpo.py: 0.33 against 0.50.)
    The kernel is fitted on at most FIT_POINTS of them (the fit is cubic in its points and
    repeated by the optimizer), then the mean is conditioned on all it kept; predictions are a
    plain matrix product, so scoring thousands of candidates per proposal stays cheap.
    """

    def __init__(self, x: np.ndarray, z: np.ndarray, *, seed: int = 0, noise: float = 0.0) -> None:
        x = np.asarray(x, dtype=float)
        z = np.asarray(z, dtype=float)
        rng = np.random.default_rng(seed)
        self._memo: dict[str, np.ndarray] = {}
        self._offset = float(z.mean()) if len(z) else 0.0
        self._points = np.empty((0, x.shape[1] if x.ndim == 2 else 0))
        self._alpha = np.empty(0)
        if len(z) < 3 or x.shape[1] == 0:
            return
        keep_x, keep_z = _best_and_random(x, z, MAX_PRIOR_POINTS, rng)
        scale = float(keep_z.std()) or 1.0
        normalized = (keep_z - keep_z.mean()) / scale
        if len(keep_z) < MIN_FIT_POINTS:
            kernel = _fixed_kernel(noise)
        else:
            fit_x, fit_z = _best_and_random(keep_x, normalized, FIT_POINTS, rng)
            kernel = _fit_gp(fit_x, fit_z, _kernel(x.shape[1], floor=noise), True).kernel_
        self._amplitude, self._lengths, fitted = _kernel_parameters(kernel, x.shape[1])
        gram = self._amplitude * _matern52(keep_x, keep_x, self._lengths)
        # Heteroscedastic in the one way that matters here: a prior released with noise is
        # smoothed by at least that noise, never interpolated through it.
        gram[np.diag_indices_from(gram)] += max(fitted, noise, 1e-6)
        self._points = keep_x
        self._alpha = scale * cho_solve(cho_factor(gram, lower=True), normalized)
        self._offset = float(keep_z.mean())

    def mean(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if len(x) == 0:
            return np.empty(0)
        if not len(self._alpha):
            return np.full(len(x), self._offset)
        key = _digest(x) if len(x) >= MEMO_FROM else ""
        if key and key in self._memo:
            return self._memo[key].copy()
        # In blocks: a study's first proposal scores every configuration the priors evaluated.
        out = np.concatenate(
            [
                self._offset
                + (self._amplitude * _matern52(x[i : i + 8192], self._points, self._lengths))
                @ self._alpha
                for i in range(0, len(x), 8192)
            ]
        )
        if key:
            self._memo.clear()
            self._memo[key] = out.copy()
        return np.asarray(out, dtype=float)


_SURFACES: OrderedDict[str, PriorSurface] = OrderedDict()


def prior_surface(
    x: np.ndarray, z: np.ndarray, *, seed: int = 0, noise: float = 0.0
) -> PriorSurface:
    """PriorSurface(x, z, seed=seed, noise=noise), reused when the same trials were fitted
    recently. noise: the known observation-noise variance of z, as a share of its variance.

    The fit is deterministic given its inputs, so a reused surface is the one a new fit
    would give.
    """
    x = np.ascontiguousarray(x, dtype=float)
    z = np.ascontiguousarray(z, dtype=float)
    key = _digest(x, z, np.array([seed, x.shape[1] if x.ndim == 2 else 0, noise]))
    surface = _SURFACES.get(key)
    if surface is None:
        surface = PriorSurface(x, z, seed=seed, noise=noise)
        _SURFACES[key] = surface
        while len(_SURFACES) > SURFACE_CACHE:
            _SURFACES.popitem(last=False)
    else:
        _SURFACES.move_to_end(key)
    return surface


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _matern52(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The Matérn 5/2 correlation of every row of a with every row of b.

    Squared distances come from one matrix product (|a|² + |b|² - 2ab'), several times faster
    than a pairwise loop on the tens of thousands of points a prior's first proposal scores.
    """
    a, b = a / lengths, b / lengths
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    r = SQRT5 * np.sqrt(np.maximum(squared, 0.0, out=squared), out=squared)
    return np.asarray((1.0 + r + r * r / 3.0) * np.exp(-r), dtype=float)


def _kernel_parameters(kernel: Any, dim: int) -> tuple[float, np.ndarray, float]:
    """(amplitude, length scales, noise) of a ConstantKernel * Matern + WhiteKernel."""
    product, white = kernel.k1, kernel.k2
    lengths = np.broadcast_to(np.asarray(product.k2.length_scale, dtype=float), (dim,))
    return float(product.k1.constant_value), lengths.copy(), float(white.noise_level)


def _best_and_random(
    x: np.ndarray, z: np.ndarray, limit: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    if len(z) <= limit:
        return x, z
    order = np.argsort(z)
    best = order[: limit // 4]
    rest = rng.choice(order[limit // 4 :], limit - len(best), replace=False)
    keep = np.concatenate([best, rest])
    return x[keep], z[keep]


class TargetModel:
    """A GP on the new task's observations; kernel hyperparameters refit on a schedule.

    Refitting the kernel is the expensive part; between refits only the Cholesky factor is
    recomputed, which keeps a 100-step study cheap without letting the fit go stale.
    """

    REFIT_AT = (3, 5, 8, 12, 17, 25, 35, 50, 70, 100, 140, 200)

    def __init__(self, dim: int, *, fit_from: int = 0) -> None:
        self._kernel = _kernel(dim)
        self._fitted_at = 0
        self._gp: Any = None
        # Below this many points the kernel keeps its starting hyperparameters.
        self._fit_from = fit_from

    def fit(self, x: np.ndarray, z: np.ndarray) -> None:
        n = len(z)
        optimize = n >= self._fit_from and (
            self._fitted_at == 0 or any(self._fitted_at < k <= n for k in self.REFIT_AT)
        )
        self._gp = _fit_gp(np.asarray(x, float), np.asarray(z, float), self._kernel, optimize)
        if optimize:
            self._kernel = self._gp.kernel_
            self._fitted_at = n

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._gp is not None, "fit() first"
        mean, std = self._gp.predict(np.asarray(x, float), return_std=True)
        return mean, std

    def loo_mean(self) -> np.ndarray:
        """Leave-one-out predictions at the observed points (closed form, in GP units)."""
        assert self._gp is not None, "fit() first"
        gp = self._gp
        n = gp.alpha_.shape[0]
        inverse_diag = np.diag(cho_solve((gp.L_, True), np.eye(n)))
        y = gp.y_train_.ravel()
        return np.asarray(y - gp.alpha_.ravel() / inverse_diag, dtype=float)

    def training_x(self) -> np.ndarray:
        assert self._gp is not None, "fit() first"
        return np.asarray(self._gp.X_train_, dtype=float)
