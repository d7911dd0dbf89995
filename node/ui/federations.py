"""What `fed host` wrote in the home: fed/NAME/run-NNN/progress.jsonl (one event per line:
start, then one per round with its aggregated metrics, each member's own metrics as it signed
them, accepted members and refused updates) and result.json when the run finished
(federation/server_app.py writes both).

Must never write there, nor fail on a run still going or cut short: a missing or torn line is
left out, not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FederationRound", "FederationRun", "list_runs", "read_run"]

#: Most journal bytes read for one run (a run writes a few hundred bytes a round).
MAX_JOURNAL_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class FederationRound:
    """One round: its aggregated metrics, the members aggregated, the updates refused (node,
    reason), and each aggregated member's own metrics (by node id)."""

    number: int
    metrics: dict[str, float]
    accepted: list[str]
    refused: list[tuple[str, str]]
    member_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class FederationRun:
    """One run of a federation, as far as it went."""

    federation: str
    run: str
    rounds_planned: int | None
    rounds: list[FederationRound] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    finished: bool = False


def list_runs(home_path: Path) -> list[tuple[str, str]]:
    """(federation, run folder name) of every hosted run, newest run of each last."""
    root = home_path / "fed"
    if not root.is_dir():
        return []
    return [
        (fed.name, run.name)
        for fed in sorted(p for p in root.iterdir() if p.is_dir())
        for run in sorted(p for p in fed.iterdir() if p.is_dir() and p.name.startswith("run-"))
    ]


def read_run(home_path: Path, federation: str, run: str) -> FederationRun | None:
    """The run's journal and result, or None when there is no such run."""
    if (federation, run) not in list_runs(home_path):
        return None
    folder = home_path / "fed" / federation / run
    planned: int | None = None
    rounds: list[FederationRound] = []
    for event in _events(folder / "progress.jsonl"):
        if event.get("event") == "start":
            planned = _int(event.get("rounds"))
        elif event.get("event") == "round":
            rounds.append(
                FederationRound(
                    number=_int(event.get("round")) or len(rounds) + 1,
                    metrics=_numbers(event.get("metrics")),
                    accepted=[str(m) for m in event.get("accepted") or []],
                    refused=[
                        (str(r.get("node", "")), str(r.get("reason", "")))
                        for r in event.get("refused") or []
                        if isinstance(r, dict)
                    ],
                    member_metrics={
                        str(node): _numbers(values)
                        for node, values in _mapping(event.get("member_metrics")).items()
                    },
                )
            )
    members: list[str] = []
    finished = False
    try:
        result = json.loads((folder / "result.json").read_text())
        members = [str(m) for m in result.get("members", [])]
        finished = True
    except (OSError, ValueError, AttributeError):
        members = sorted({m for r in rounds for m in r.accepted})
    return FederationRun(federation, run, planned, rounds, members, finished)


def _events(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_JOURNAL_BYTES)
    except OSError:
        return []
    events = []
    for line in raw.decode(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _numbers(value: Any) -> dict[str, float]:
    """The numeric entries of a JSON object (anything else in a journal is left out)."""
    return {
        str(k): float(v)
        for k, v in _mapping(value).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None
