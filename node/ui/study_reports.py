"""The warm-start report of a study, kept beside it in the home (warm-start/<hash>.json).

`tune --warm-start` prints its report (prior studies, who signed them, weights at start and
at the end, studies left out and why) and calls save_report(); the UI's Study page reads it
back. One file per study (its name hashed: names are the organization's own text), holding one
report per run of the study, oldest first.

Must stay standard library only (the tune command imports it) and never be sent to a peer:
the report names the study.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["load_reports", "report_path", "save_report"]

#: Most runs' reports kept per study (oldest dropped first).
MAX_REPORTS = 50


def report_path(home_path: Path, study_name: str) -> Path:
    digest = hashlib.sha256(study_name.encode()).hexdigest()[:32]
    return home_path / "warm-start" / f"{digest}.json"


def load_reports(home_path: Path, study_name: str) -> list[dict[str, Any]]:
    """The reports kept for the study, oldest first (none when it never warm-started)."""
    path = report_path(home_path, study_name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("study") != study_name:
        return []
    reports = data.get("runs", [])
    return [r for r in reports if isinstance(r, dict)] if isinstance(reports, list) else []


def save_report(home_path: Path, study_name: str, report: dict[str, Any]) -> None:
    """Appends one run's report to the study's file."""
    path = report_path(home_path, study_name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    runs = [*load_reports(home_path, study_name), report][-MAX_REPORTS:]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"study": study_name, "runs": runs}, default=str))
    tmp.replace(path)
