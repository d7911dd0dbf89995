"""Initial-design transfer: evaluate the best configurations of prior studies first.

What SageMaker's warm start does: take each prior study's best trials and evaluate them
before anything else, best first, one prior after the other (so no single prior fills the
design). After the design the study continues with whatever sampler it would have used
cold. Simple and robust, but it stops using the priors once the design is spent.
"""

from __future__ import annotations

import numpy as np

__all__ = ["initial_design"]


def initial_design(
    prior_points: list[np.ndarray],
    prior_scores: list[np.ndarray],
    count: int,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Up to `count` points of the unit cube: priors' bests, interleaved, duplicates removed.

    prior_scores are copula scores (lower is better); priors with a larger weight go first
    in each round and priors of weight zero are skipped.
    """
    order = list(range(len(prior_points)))
    if weights is not None:
        order = [i for i in np.argsort(-np.asarray(weights), kind="stable") if weights[i] > 0]
    ranked = [
        np.asarray(prior_points[i])[np.argsort(prior_scores[i], kind="stable")] for i in order
    ]
    chosen: list[np.ndarray] = []
    depth = 0
    while len(chosen) < count and any(depth < len(r) for r in ranked):
        for points in ranked:
            if depth < len(points) and len(chosen) < count:
                point = points[depth]
                if not any(np.allclose(point, c) for c in chosen):
                    chosen.append(point)
        depth += 1
    dim = prior_points[0].shape[1] if prior_points else 0
    return np.array(chosen).reshape(len(chosen), dim)
