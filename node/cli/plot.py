"""`gridpoint plot ID [ID ...] --out FILE.png|FILE.svg [--kind curves|best-so-far|rounds]`.

Writes a picture without a server: records' learning curves (several compared on one chart),
studies' best-so-far side by side (e.g. a cold and a warm-started study), a federation's rounds.
Drawn by matplotlib (gridpoint.node.ui.plots: trials, rounds and steps on whole-number ticks);
this module only finds the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gridpoint.errors import ConfigError, RequestError
from gridpoint.node.cli.output import print_json, print_line
from gridpoint.node.home import resolve_home

if TYPE_CHECKING:
    from gridpoint.node.cli.main import SubParsers
    from gridpoint.node.home import NodeHome
    from gridpoint.node.store.base import CatalogStore
    from gridpoint.node.ui.charts import Panel

__all__ = ["register"]

#: Most trial records read for one catalog study.
MAX_STUDY_TRIALS = 10_000


def _curves(home: NodeHome, store: CatalogStore, ids: list[str]) -> list[Panel]:
    from gridpoint.node.record_views import SignerNames, find_record
    from gridpoint.node.ui.views import curve_panels, record_label

    names = SignerNames(home, store)
    found = [find_record(store, i) for i in ids]
    panels = curve_panels([(record_label(s, names), s.record) for s in found])
    if not panels:
        raise RequestError("none of these records has a curve")
    return panels


def _study_values(
    home: NodeHome, store: CatalogStore, db_url: str, name: str
) -> tuple[list[int], list[float], bool]:
    """A study's trial numbers and objective values in trial order: this node's own study by
    name (studies.db), else a catalog study by its pseudonym (trial records in the order they
    were stored, numbered from 0)."""
    from gridpoint.node.store.query_filter import And, Comparison
    from gridpoint.node.ui.studies import optuna_url, read_study

    own = read_study(optuna_url(home.studies_url(db_url)), name)
    if own is not None:
        done = [t for t in own.complete if t.value is not None and not t.problem]
        return (
            [t.number for t in done],
            [t.value for t in done if t.value is not None],
            own.maximize,
        )
    records = store.query(
        And((Comparison("study", "=", name), Comparison("kind", "=", "trial"))),
        limit=MAX_STUDY_TRIALS,
    )
    if not records:
        raise RequestError(f"no study {name!r} on this node nor in its catalog")
    metric = records[0].record.objective_metric
    values = [r.record.metrics[metric] for r in records if metric in r.record.metrics]
    return list(range(len(values))), values, records[0].record.objective_direction != "minimize"


def _best_so_far(home: NodeHome, store: CatalogStore, db_url: str, ids: list[str]) -> list[Panel]:
    from gridpoint.node.ui.charts import Panel, Series, best_so_far

    best = Panel("best so far", "trial", "objective")
    trials = Panel("every trial", "trial", "objective")
    for name in ids:
        x, values, maximize = _study_values(home, store, db_url, name)
        label = name if len(name) <= 24 else name[:12]
        best.series.append(Series(label, x, best_so_far(values, maximize), "step"))
        trials.series.append(Series(label, x, values, "points"))
    return [best, trials]


def _rounds(home: NodeHome, store: CatalogStore, ids: list[str]) -> list[Panel]:
    """A federation's rounds: a hosted federation's newest run by name (its journal), else a
    federated record's per-round curve."""
    from gridpoint.node.record_views import SignerNames, find_record
    from gridpoint.node.ui.charts import Panel, Series
    from gridpoint.node.ui.federations import list_runs, read_run
    from gridpoint.node.ui.views import curve_panels, record_label

    panels: dict[str, Panel] = {}
    names = SignerNames(home, store)
    for ident in ids:
        runs = [run for fed, run in list_runs(home.path) if fed == ident]
        if runs:
            view = read_run(home.path, ident, runs[-1])
            assert view is not None
            for r in view.rounds:
                for metric, value in r.metrics.items():
                    panel = panels.setdefault(metric, Panel(metric, "round", metric))
                    if not panel.series or panel.series[-1].label != ident:
                        panel.series.append(Series(ident, [], []))
                    series = panel.series[-1]
                    panel.series[-1] = Series(
                        ident, [*series.x, float(r.number)], [*series.y, value]
                    )
            continue
        stored = find_record(store, ident)
        for panel in curve_panels([(record_label(stored, names), stored.record)]):
            target = panels.setdefault(panel.title, Panel(panel.title, "round", panel.title))
            target.series.extend(panel.series)
    if not panels:
        raise RequestError("no rounds to draw")
    return list(panels.values())


def cmd_plot(args: argparse.Namespace) -> int:
    from gridpoint.node.store.sql_store import open_store

    try:
        from gridpoint.node.ui.plots import render
    except ImportError as exc:
        raise ConfigError(
            f"gridpoint plot needs the `ui` extra ({exc.name} is missing): "
            "pip install 'gridpoint[ui]'"
        ) from exc

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ConfigError(f"--out {out.name}: write a .png or a .svg file")
    home = resolve_home(args.home)
    home.check()
    db_url = home.db_url(args.db)
    store = open_store(db_url)
    try:
        if args.kind == "curves":
            panels = _curves(home, store, args.ids)
        elif args.kind == "best-so-far":
            panels = _best_so_far(home, store, db_url, args.ids)
        else:
            panels = _rounds(home, store, args.ids)
    finally:
        store.close()
    picture = render(panels, "png" if fmt == "png" else "svg")
    try:
        out.write_bytes(picture)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from exc
    if args.json:
        print_json({"out": str(out), "kind": args.kind, "panels": [p.title for p in panels]})
    else:
        print_line(f"wrote {out} ({args.kind}: {', '.join(p.title for p in panels)})")
    return 0


def register(sub: SubParsers) -> None:
    """Adds `plot`."""
    p = sub.add_parser(
        "plot",
        help="draw records' curves, studies' best-so-far or a federation's rounds to a file",
        description=(
            "curves: record ids (or unique prefixes), one line each, one panel per metric. "
            "best-so-far: study names of this node or catalog study pseudonyms, side by side "
            "(e.g. a cold and a warm-started study). rounds: a federation this node hosted "
            "(its newest run) or a federated record's id."
        ),
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="records, studies or federations")
    p.add_argument("--out", required=True, help="FILE.png or FILE.svg")
    p.add_argument(
        "--kind",
        choices=("curves", "best-so-far", "rounds"),
        default="curves",
        help="what to draw (default curves)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_plot)
