"""Ray Tune study overhead per trial, beside `gridpoint tune`, on the same tiny study.

    .venv/bin/python bench/ray_overhead.py [--trials 4] [--repeats 2] [--epochs 3]

The study is examples/tiny-study.toml with the work of a trial made the same whatever the
sampler proposes (epochs and batch size fixed, only the learning rate and warmup searched),
no pruner and no model kept: the two runners then differ only by their own cost. Side by
side in one run, alternated --repeats times, each in a fresh process and node home, one trial
at a time on the CPU:

- tune: `gridpoint tune STUDY --trials N --devices cpu` (in process, through the CLI's main)
- ray:  a local Ray with one CPU, then gridpoint.integrations.ray.run_study(N trials, one at
  a time); Ray's start is timed apart (a cluster is started once, not per study).

Each study's time runs from the command's start to its end (data loading, torch imports,
publishing included; for Ray, its workers' imports too). Both run with OMP_NUM_THREADS=1, the
thread count Ray gives a one-CPU trial. Ray's overhead per trial is the
difference of the medians divided by N, as a share of tune's time per trial.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_TUNE = """
import sys, time
from gridpoint.node.cli.main import main
from gridpoint.node.home import NodeHome
home = NodeHome(__import__("pathlib").Path(sys.argv[1])); home.init("Bench")
start = time.perf_counter()
assert main(["--home", sys.argv[1], "tune", sys.argv[2], "--trials", sys.argv[3],
             "--devices", "cpu", "--json"]) == 0
print("STUDY", time.perf_counter() - start, file=sys.stderr)
"""

_RAY = """
import logging, sys, time
import ray
from gridpoint.node.home import NodeHome
home = NodeHome(__import__("pathlib").Path(sys.argv[1])); home.init("Bench")
start = time.perf_counter()
ray.init(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False,
         logging_level=logging.WARNING, log_to_driver=False, _temp_dir=sys.argv[4])
print("START", time.perf_counter() - start, file=sys.stderr)
from gridpoint.integrations.ray import run_study
start = time.perf_counter()
summary = run_study(sys.argv[2], home=home, trials=int(sys.argv[3]), max_concurrent=1)
assert len(summary.outcomes) == int(sys.argv[3]), summary.outcomes
print("STUDY", time.perf_counter() - start, file=sys.stderr)
ray.shutdown()
"""


def _run(code: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           # A local bench cluster: no token file written to ~/.ray.
           "RAY_AUTH_MODE": "disabled",
           # Ray gives a 1-CPU trial one thread (OMP_NUM_THREADS=1); tune gets the same, so
           # the two differ only by Ray (on a busy machine more threads than cores thrash).
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return {
        line.split()[0]: float(line.split()[1])
        for line in done.stderr.splitlines()
        if line.startswith(("STUDY ", "START "))
    }


def _study(folder: Path, epochs: int) -> str:
    """The tiny study, every trial the same work: only the learning rate and warmup vary."""
    shutil.copy(ROOT / "examples" / "tiny_pipeline.py", folder / "tiny_pipeline.py")
    text = (ROOT / "examples" / "tiny-study.toml").read_text()
    text = (
        text.split("[search_space]")[0]
        + f"""[search_space]
learning_rate = {{ type = "float", low = 1e-4, high = 5e-3, log = true }}
warmup_ratio = {{ type = "float", low = 0.0, high = 0.2 }}
batch_size = {{ type = "categorical", choices = [32] }}
epochs = {{ type = "categorical", choices = [{epochs}] }}

[pruner]
type = "none"

[output]
keep = 0
"""
    )
    (folder / "study.toml").write_text(text)
    return str(folder / "study.toml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    tune_s, ray_s, ray_start = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="gp-rb-", dir="/tmp") as tmp:
            folder = Path(tmp)
            study = _study(folder, args.epochs)
            tune_s.append(_run(_TUNE, str(folder / "t"), study, str(args.trials))["STUDY"])
            ray = _run(_RAY, str(folder / "r"), study, str(args.trials), str(folder / "ray"))
            ray_s.append(ray["STUDY"])
            ray_start.append(ray["START"])
        print(f"run {repeat + 1}: tune {tune_s[-1]:.1f} s, ray {ray_s[-1]:.1f} s "
              f"(+ Ray start {ray_start[-1]:.1f} s)", flush=True)  # fmt: skip
    tune_med, ray_med = statistics.median(tune_s), statistics.median(ray_s)
    per_trial = tune_med / args.trials
    overhead = (ray_med - tune_med) / args.trials
    print(
        f"{args.trials} trials, one at a time: tune {tune_med:.1f} s ({per_trial:.2f} s/trial), "
        f"Ray Tune {ray_med:.1f} s ({ray_med / args.trials:.2f} s/trial); overhead "
        f"{overhead:+.2f} s/trial = {overhead / per_trial:+.0%} of tune's time per trial; "
        f"Ray's start {statistics.median(ray_start):.1f} s (once per cluster)"
    )


if __name__ == "__main__":
    main()
