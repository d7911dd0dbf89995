"""The warm-start report of a study, kept beside it in the home (warm-start/<hash>.json).

`tune --warm-start` (node/tuning/study_run.py) saves one `WarmStartReport` per run of a study:
the prior studies, who signed them, the weight each started with and learned, and the studies
left out and why. The UI's Study page reads them back. One file per study (its name hashed:
names are the organization's own text), holding the reports of its runs, oldest first.

Must stay standard library only (the UI reads it without the training stack) and never be
sent to a peer: the report names the study. Reading never fails on a file another version
wrote or someone edited: what cannot be read is left out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DimensionRow",
    "PriorRow",
    "WarmStartReport",
    "load_reports",
    "report_path",
    "save_report",
]

#: Most runs' reports kept per study (oldest dropped first).
MAX_REPORTS = 50


@dataclass(frozen=True)
class DimensionRow:
    """How one dimension of the study was matched in a prior (trainers/transfer/matching.py)."""

    dimension: str
    #: The prior's parameter matched to it ("" when the prior does not have it).
    prior: str
    #: "same name", "renamed by config", "normalized name" or "missing".
    how: str
    note: str = ""


@dataclass(frozen=True)
class PriorRow:
    """One prior study: where it comes from, and how it was used or why it was left out."""

    prior: str
    study: str
    signer: str
    signer_name: str
    trials: int
    used: bool
    similarity: float | None = None
    #: The weight it started with (learned weights are the report's `weights`).
    weight: float | None = None
    notes: tuple[str, ...] = ()
    reason: str = ""
    #: Each dimension of the study and how this prior's parameters were matched to it.
    dimensions: tuple[DimensionRow, ...] = ()
    #: The prior's trials left out (a value outside the study's space) and values clipped.
    trials_left_out: int = 0
    values_clipped: int = 0
    #: A private prior's signed guarantee (None: its values are exact), the standard
    #: deviation of the noise its released values carry, and the trust that noise leaves it.
    epsilon: float | None = None
    delta: float | None = None
    noise: float | None = None
    reliability: float | None = None

    @property
    def privacy(self) -> str:
        """Its guarantee and the noise its released values carry ("exact" when not private)."""
        if self.epsilon is None:
            return "exact" if self.used else ""
        text = f"epsilon {self.epsilon:g}, delta {self.delta or 0:g}"
        if self.noise:
            text += f"; noise ±{self.noise:.3g}, trusted ×{self.reliability or 0:.2f}"
        return text


@dataclass(frozen=True)
class WarmStartReport:
    """What one run of a study was warm-started from."""

    method: str
    priors: tuple[PriorRow, ...] = ()
    #: The priors' weights at the latest proposal, by prior label.
    weights: dict[str, float] = field(default_factory=dict)
    #: The weight of the study's own observations at the latest proposal.
    study_weight: float = 1.0
    prior_curves: int = 0
    saved_at: str = ""

    @property
    def used(self) -> bool:
        """Whether any prior informs the study (else it was tuned cold)."""
        return any(p.used for p in self.priors)


def report_path(home_path: Path, study_name: str) -> Path:
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:32]
    return home_path / "warm-start" / f"{digest}.json"


def load_reports(home_path: Path, study_name: str) -> list[WarmStartReport]:
    """The reports kept for the study, oldest first (none when it never warm-started)."""
    path = report_path(home_path, study_name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("study") != study_name:
        return []
    runs = data.get("runs", [])
    reports = [_report(r) for r in runs] if isinstance(runs, list) else []
    return [r for r in reports if r is not None]


def save_report(home_path: Path, study_name: str, report: WarmStartReport) -> None:
    """Appends one run's report to the study's file."""
    path = report_path(home_path, study_name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    runs = [*load_reports(home_path, study_name), report][-MAX_REPORTS:]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"study": study_name, "runs": [asdict(r) for r in runs]}))
    tmp.replace(path)


def _report(data: Any) -> WarmStartReport | None:
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        return None
    priors = data.get("priors")
    weights = data.get("weights")
    try:
        return WarmStartReport(
            method=data["method"],
            priors=tuple(
                p for p in map(_prior, priors if isinstance(priors, list) else []) if p is not None
            ),
            weights={str(k): float(v) for k, v in (weights or {}).items()},
            study_weight=float(data.get("study_weight", 1.0)),
            prior_curves=int(data.get("prior_curves", 0)),
            saved_at=str(data.get("saved_at", "")),
        )
    except (AttributeError, TypeError, ValueError):
        return None


def _prior(data: Any) -> PriorRow | None:
    if not isinstance(data, dict):
        return None
    notes = data.get("notes")
    dimensions = data.get("dimensions")
    try:
        return PriorRow(
            prior=str(data["prior"]),
            study=str(data.get("study", "")),
            signer=str(data.get("signer", "")),
            signer_name=str(data.get("signer_name", "")),
            trials=int(data.get("trials", 0)),
            used=data.get("used") is True,
            similarity=_number(data.get("similarity")),
            weight=_number(data.get("weight")),
            notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
            reason=str(data.get("reason", "")),
            dimensions=tuple(
                d
                for d in map(_dimension, dimensions if isinstance(dimensions, list) else [])
                if d is not None
            ),
            trials_left_out=int(data.get("trials_left_out", 0)),
            values_clipped=int(data.get("values_clipped", 0)),
            epsilon=_number(data.get("epsilon")),
            delta=_number(data.get("delta")),
            noise=_number(data.get("noise")),
            reliability=_number(data.get("reliability")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _dimension(data: Any) -> DimensionRow | None:
    if not isinstance(data, dict) or not isinstance(data.get("dimension"), str):
        return None
    return DimensionRow(
        dimension=data["dimension"],
        prior=str(data.get("prior", "")),
        how=str(data.get("how", "")),
        note=str(data.get("note", "")),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
