"""`./dev demo`: two organizations' nodes on loopback, end to end, with the real CLI.

Creates two node homes under a fresh folder (or --workdir), starts both daemons on free
ports, makes them trust each other by fingerprint, publishes example runs on one, syncs
them to the other, and queries locally and live. Every command it runs is printed, so the
output doubles as a walkthrough. Daemons are stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLE_RUNS = [
    {"learning_rate": 2e-5, "batch_size": 16, "accuracy": 0.84},
    {"learning_rate": 5e-5, "batch_size": 32, "accuracy": 0.88},
    {"learning_rate": 3e-4, "batch_size": 32, "accuracy": 0.71},
]


def gridpoint(home: Path, *args: str) -> str:
    shown = " ".join(shlex.quote(a) for a in ("gridpoint", "--home", str(home), *args))
    print(f"\n$ {shown}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "gridpoint", "--home", str(home), *args],
        capture_output=True,
        text=True,
    )
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        raise SystemExit(f"demo step failed: {result.stderr.strip()}")
    return result.stdout


def start_daemon(home: Path) -> tuple[subprocess.Popen[str], str]:
    print(f"\n$ gridpoint --home {home} node start --listen 127.0.0.1:0 &", flush=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gridpoint",
            "--home",
            str(home),
            "node",
            "start",
            "--listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=(home / "daemon.log").open("w"),
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"daemon did not start; see {home / 'daemon.log'}")
    print(line)
    return proc, line.removeprefix("listening on ")


def record(run: dict[str, float]) -> dict[str, object]:
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
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gridpoint-demo-"))
    alpha, beta = work / "alpha", work / "beta"
    gridpoint(alpha, "init", "--name", "Alpha Labs")
    gridpoint(beta, "init", "--name", "Beta Research")
    fingerprint = {
        h: json.loads(gridpoint(h, "identity", "--json"))["fingerprint"] for h in (alpha, beta)
    }
    daemons = []
    try:
        for home in (alpha, beta):
            daemons.append(start_daemon(home))
        (_, alpha_addr), (_, beta_addr) = daemons
        gridpoint(beta, "peer", "add", alpha_addr, "--fingerprint", fingerprint[alpha])
        gridpoint(alpha, "peer", "add", beta_addr, "--fingerprint", fingerprint[beta])
        for i, run in enumerate(EXAMPLE_RUNS):
            path = alpha / f"run-{i}.json"
            path.write_text(json.dumps(record(run), indent=2))
            gridpoint(alpha, "publish", str(path))
        gridpoint(beta, "catalog", "sync")
        gridpoint(
            beta,
            "catalog",
            "query",
            "task.type = 'text-classification' and metrics.accuracy > 0.8",
            "--order-by",
            "metrics.accuracy desc",
        )
        gridpoint(beta, "catalog", "query", "params.learning_rate < 1e-4", "--peers", "--json")
    finally:
        for proc, _ in daemons:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    print(f"\ndemo finished; node homes and daemon logs are in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
