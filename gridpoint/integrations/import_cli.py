"""`gridpoint import optuna|mlflow`: bring existing history into a node home, once.

Every run goes the way a `tune` trial goes (sink.py): the anonymizer's allowlist, a signed record,
the full private record. Re-importing publishes only runs not imported before; `--dry-run`
shows what would be published and writes nothing; names outside the vocabulary are reported,
never dropped silently; `--json` prints the summary as one document.

Registered through the `gridpoint.commands` entry point: node never imports this module, and
importing it loads nothing heavy (each handler imports its source's library).

Must never: print a record that was not made by the anonymizer, or show a storage URL's
password.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gridpoint.node.cli.output import print_json, print_line, print_table, stderr

if TYPE_CHECKING:
    from rich.progress import Progress

    from gridpoint.integrations.foreign_run import ForeignRun, ModelRef
    from gridpoint.integrations.sink import Outcome
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.schema import TaskDescriptor

__all__ = ["register"]


class _Source(Protocol):
    def __len__(self) -> int: ...

    def runs(self) -> Iterator[tuple[str, str, Callable[[], ForeignRun | str]]]: ...

    def close(self) -> None: ...


@dataclass
class _Summary:
    source: str
    study: str
    dry_run: bool
    imported: list[dict[str, Any]] = field(default_factory=list)
    present: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    left_out: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: What the source's listing stopped short of (caps), said on stderr.
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, outcome: Outcome) -> None:
        from gridpoint.schema import record_to_json

        for item in outcome.left_out:
            self.left_out[(item.kind, item.name, item.reason)] += 1
        if outcome.status == "present":
            self.present += 1
        elif outcome.status == "skipped":
            self.skipped.append({"run": label, "reason": outcome.reason})
        elif outcome.record is not None:
            self.imported.append(
                {
                    "run": label,
                    "number": outcome.number,
                    "record_id": outcome.record_id,
                    **({"record": record_to_json(outcome.record)} if self.dry_run else {}),
                }
            )

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "study": self.study,
            "dry_run": self.dry_run,
            "notes": self.notes,
            "imported": len(self.imported),
            "already_present": self.present,
            "skipped": self.skipped,
            "not_published": [
                {"kind": kind, "name": name, "reason": reason, "runs": runs}
                for (kind, name, reason), runs in sorted(self.left_out.items())
            ],
            "records": self.imported,
        }


def _read(read: Callable[[], ForeignRun | str]) -> ForeignRun | str:
    """A run, or why it is skipped: a damaged run (file, row, value) is skipped alone."""
    from gridpoint.errors import GridpointError
    from gridpoint.integrations.foreign_run import unreadable

    try:
        return read()
    except GridpointError:
        raise  # the source itself failed (a server gone, out of time): the import stops
    except Exception as exc:  # what a foreign store holds is never trusted to parse
        return unreadable(exc)


def _run_import(
    args: argparse.Namespace,
    study: str,
    source: _Source,
    task: TaskDescriptor,
    model: ModelRef,
    summary: _Summary,
) -> None:
    from gridpoint.errors import RecordError
    from gridpoint.integrations.sink import HomeSink, Outcome, open_home

    home = open_home(args.home)
    total = len(source)
    with (
        HomeSink(home, db=args.db, dry_run=args.dry_run) as sink,
        _progress(args.json) as progress,
    ):
        bar = progress.add_task("importing", total=total)
        for label, key, read in source.runs():
            if key and sink.knows(study, key):
                summary.present += 1
                progress.advance(bar)
                continue
            run = _read(read)
            if isinstance(run, str):
                summary.skipped.append({"run": label, "reason": run})
            else:
                try:
                    outcome = sink.add(run, task, model)
                except RecordError as exc:
                    outcome = Outcome("skipped", reason=f"no valid record: {exc}")
                summary.add(label, outcome)
            progress.advance(bar)


def _progress(quiet: bool, *, transient: bool = False) -> Progress:
    """The progress shown on a terminal's stderr: what is being listed (with the time it
    takes), then runs; nothing where stderr is a pipe or a log."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        disable=quiet or not stderr.is_terminal,
        transient=transient,
    )


def _print(summary: _Summary, as_json: bool) -> None:
    if as_json:
        print_json(summary.as_json())
        return
    if summary.dry_run and summary.imported:
        print_table(
            "would publish (dry run: nothing written)",
            ["run", "trial", "status", "hyperparameters", "metrics", "curve points"],
            [
                [
                    r["run"],
                    r["number"],
                    r["record"]["status"],
                    ", ".join(
                        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in r["record"]["hyperparameters"].items()
                    ),  # fmt: skip
                    ", ".join(f"{k}={v:.4g}" for k, v in r["record"]["metrics"].items()),
                    len(r["record"]["curve"]),
                ]
                for r in summary.imported
            ],
        )
    if summary.left_out:
        print_table(
            "kept private: outside the published vocabulary",
            ["kind", "name", "why", "runs"],
            [[k, n, r, c] for (k, n, r), c in sorted(summary.left_out.items())],
        )
    for note in summary.notes:
        stderr.print(f"warning: {note}", markup=False)
    reasons = Counter(s["reason"] for s in summary.skipped)
    for reason, count in sorted(reasons.items()):
        print_line(f"skipped {count}: {reason}")
    verb = "would publish" if summary.dry_run else "imported"
    print_line(
        f"{verb} {len(summary.imported)} run(s); {summary.present} already in this home; "
        f"{len(summary.skipped)} skipped"
    )


def _task_and_model(args: argparse.Namespace) -> tuple[TaskDescriptor, ModelRef]:
    from gridpoint.integrations.foreign_run import ModelRef
    from gridpoint.integrations.task import declared_task
    from gridpoint.schema.vocabulary import public_hub_id

    if args.model_id and not public_hub_id(args.model_id):
        from gridpoint.errors import ConfigError

        raise ConfigError("--model-id must be a public hub id like 'org/model', never a path")
    task = declared_task(
        args.task, train_size=args.train_size, language=args.language, num_labels=args.num_labels
    )
    return task, ModelRef(public_id=args.model_id, family=args.model_family)


def _import(args: argparse.Namespace, kind: str, name: str, source: _Source) -> int:
    task, model = _task_and_model(args)
    summary = _Summary(kind, name, args.dry_run)
    try:
        summary.notes = list(getattr(source, "notes", []))
        _run_import(args, name, source, task, model, summary)
    finally:
        source.close()
    _print(summary, args.json)
    return 0


def cmd_import_optuna(args: argparse.Namespace) -> int:
    from gridpoint.integrations.optuna_trials import read_study

    _task_and_model(args)  # a wrong --task or --model-id is said before the storage opens
    source = read_study(args.storage, args.study, args.metric)
    return _import(args, "optuna", source.name, source)


def cmd_import_mlflow(args: argparse.Namespace) -> int:
    from gridpoint.integrations.mlflow_runs import ReadLimits, read_experiment

    _task_and_model(args)
    if args.timeout <= 0:
        from gridpoint.errors import ConfigError

        raise ConfigError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    limits = ReadLimits(timeout_s=args.timeout, request_timeout_s=min(30.0, args.timeout))
    with _progress(args.json, transient=True) as progress:
        listing = progress.add_task(f"opening {args.experiment!r}", total=None)
        source = read_experiment(
            args.tracking_uri,
            args.experiment,
            args.metric,
            args.direction,
            limits=limits,
            progress=lambda text: progress.update(listing, description=text),
        )
    return _import(args, "mlflow", source.study, source)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what the runs trained on (published only as buckets)")
    g.add_argument(
        "--task", required=True, help="the task type, e.g. text-classification, causal-lm"
    )
    g.add_argument(
        "--train-size",
        type=int,
        required=True,
        metavar="N",
        help="training examples (only its size bucket is published)",
    )
    g.add_argument("--language", default="", help="ISO 639-1 code of the data, e.g. en")
    g.add_argument("--num-labels", type=int, default=0, metavar="N", help="classes (0: none)")
    g.add_argument("--model-id", default="", help="public hub id of the base model, if any")
    g.add_argument("--model-family", default="", help="model family, e.g. bert")
    p.add_argument(
        "--dry-run", action="store_true", help="show what would be published; write nothing"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def register(sub: SubParsers) -> None:
    """Adds `import optuna` and `import mlflow`."""
    p = sub.add_parser(
        "import",
        help="import existing runs (Optuna storage, MLflow tracking) into this node, anonymized",
        description="Publish runs that already exist elsewhere, once each.",
    )
    kinds = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    o = kinds.add_parser("optuna", help="trials of an Optuna study in its storage")
    o.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///study.db")
    o.add_argument("--study", required=True, help="the study's name in that storage")
    o.add_argument(
        "--metric", help="what the objective value measures (default: the study's metric names)"
    )
    _common(o)
    o.set_defaults(handler=cmd_import_optuna)
    m = kinds.add_parser("mlflow", help="runs of an MLflow experiment")
    m.add_argument(
        "--tracking-uri",
        required=True,
        help="a file store (file:///path/mlruns or a folder), a database "
        "(sqlite:///mlflow.db, postgresql://...) or a server (http://host:5000); read-only",
    )
    m.add_argument("--experiment", required=True, help="the experiment's name")
    m.add_argument("--metric", help="the objective metric, as MLflow names it (e.g. val_acc)")
    m.add_argument(
        "--direction",
        choices=("maximize", "minimize"),
        help="with --metric (default: minimize a loss, maximize anything else)",
    )
    m.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="against a server: give up after S seconds in all (default 300; 30 per request)",
    )
    _common(m)
    m.set_defaults(handler=cmd_import_mlflow)
