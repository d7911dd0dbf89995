"""An MLflow file store (`mlruns/`) read directly from its folders: where most teams' history is.

The layout MLflow's FileStore writes: `ROOT/EXPERIMENT_ID/meta.yaml` (the experiment's name
and lifecycle), `ROOT/EXPERIMENT_ID/RUN_ID/meta.yaml` (status as MLflow's RunStatus number,
start and end times in milliseconds), `params/KEY` (the value as text) and `metrics/KEY`
(one `TIMESTAMP VALUE [STEP]` line per logged value); keys with `/` are sub-folders. Every
file read is bounded in size, every listing in entries; a run whose files do not parse is
given back as one that raises when read, so it is skipped alone.

Must never: create, change or delete anything under the store's folder (MLflow's own
FileStore adds `.trash` on open), or read a file past its size bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from gridpoint.errors import ConfigError
from gridpoint.integrations.mlflow_runs import ListedRun, MlflowRun, ReadLimits

__all__ = ["list_runs"]

#: MLflow's RunStatus numbers, as its file store writes them.
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_MAX_META_BYTES = 64 * 1024
_MAX_PARAM_BYTES = 1024 * 1024
_MAX_METRIC_BYTES = 64 * 1024 * 1024
#: Param and metric files of one run at most.
_MAX_KEYS = 10_000


def _bounded(path: Path, limit: int) -> str:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def _meta(folder: Path) -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load(_bounded(folder / "meta.yaml", _MAX_META_BYTES))
    if not isinstance(loaded, dict):
        raise ValueError("meta.yaml is not a mapping")
    return loaded


def _ms(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError("a time that is not a number")
    return int(value)


def _keys(folder: Path) -> Iterator[tuple[str, Path]]:
    """(key, file) under folder; keys with `/` are sub-folders. At most _MAX_KEYS."""
    if not folder.is_dir():
        return
    for count, path in enumerate(sorted(p for p in folder.rglob("*") if p.is_file())):
        if count >= _MAX_KEYS:
            raise ValueError(f"more than {_MAX_KEYS} files under {folder.name}/")
        yield path.relative_to(folder).as_posix(), path


def _points(text: str, limit: int) -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of each line of a metric file (old files have no step)."""
    points: list[tuple[int, int, float]] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise ValueError("a metric line is not `TIMESTAMP VALUE [STEP]`")
        step = int(fields[2]) if len(fields) == 3 else 0
        points.append((step, int(fields[0]), float(fields[1])))
        if len(points) > limit:
            raise ValueError(f"a metric history longer than {limit} points")
    return points


def _read_run(
    folder: Path, meta: dict[str, Any], wanted: Callable[[str], bool], limits: ReadLimits
) -> MlflowRun:
    params = {key: _bounded(path, _MAX_PARAM_BYTES) for key, path in _keys(folder / "params")}
    metrics: dict[str, float] = {}
    history: dict[str, tuple[tuple[int, float], ...]] = {}
    for key, path in _keys(folder / "metrics"):
        points = _points(_bounded(path, _MAX_METRIC_BYTES), limits.max_points)
        if not points:
            continue
        # MLflow's latest value: the highest step, then the latest time.
        metrics[key] = max(points)[2]
        if wanted(key):
            by_step = sorted(points)
            history[key] = tuple((step, value) for step, _, value in by_step)
    status = meta.get("status")
    return MlflowRun(
        run_id=str(meta.get("run_id") or meta.get("run_uuid") or folder.name),
        name=str(meta.get("run_name") or ""),
        status=_STATUS.get(status, str(status)) if isinstance(status, int) else str(status),
        start_ms=_ms(meta.get("start_time")),
        end_ms=_ms(meta.get("end_time")),
        params=params,
        metrics=metrics,
        history=history,
    )


def _experiment_folder(root: Path, name: str) -> Path:
    found_any = False
    for count, folder in enumerate(sorted(root.iterdir())):
        if count >= 100_000:
            break
        if folder.name.startswith(".") or not (folder / "meta.yaml").is_file():
            continue
        found_any = True
        try:
            meta = _meta(folder)
        except Exception:  # a damaged experiment is not the one asked for
            continue
        if meta.get("name") == name and meta.get("lifecycle_stage", "active") == "active":
            return folder
    if not found_any:
        raise ConfigError(
            f"{root} holds no MLflow experiments: give the file store's folder (often `mlruns`)"
        )
    raise ConfigError(f"no MLflow experiment named {name!r} in the file store at {root}")


def _broken(error: Exception) -> MlflowRun:
    raise error


def list_runs(
    root: Path, experiment: str, wanted: Callable[[str], bool], limits: ReadLimits
) -> tuple[list[ListedRun], list[str]]:
    """The experiment's active runs, oldest first, each read when asked; notes on what was cut."""
    if not root.is_dir():
        raise ConfigError(f"no MLflow file store at {root} (not a folder)")
    folder = _experiment_folder(root, experiment)
    found: list[tuple[tuple[int, str], ListedRun]] = []
    notes: list[str] = []
    for path in sorted(folder.iterdir()):
        if not path.is_dir() or not (path / "meta.yaml").is_file():
            continue
        if len(found) >= limits.max_runs:
            notes.append(f"listed the first {limits.max_runs} runs only")
            break
        try:
            meta = _meta(path)
            if meta.get("lifecycle_stage", "active") != "active":
                continue
            start = _ms(meta.get("start_time")) or 0
        except Exception as exc:  # skipped alone, with why, when its turn comes
            found.append(((2**63, path.name), ListedRun(path.name, partial(_broken, exc))))
            continue
        run = ListedRun(
            str(meta.get("run_id") or path.name), partial(_read_run, path, meta, wanted, limits)
        )
        found.append(((start, run.run_id), run))
    found.sort(key=lambda item: item[0])
    return [run for _, run in found], notes
