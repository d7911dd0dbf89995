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
{steady}
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
start = time.perf_counter()
from gridpoint.integrations.ray import run_study
print("IMPORT", time.perf_counter() - start, file=sys.stderr)
start = time.perf_counter()
summary = run_study(sys.argv[2], home=home, trials=int(sys.argv[3]), max_concurrent=1)
assert len(summary.trials) == int(sys.argv[3]), summary.trials
print("STUDY", time.perf_counter() - start, file=sys.stderr)
ray.shutdown()
{steady}
"""

# The time from the first trial's end to the last's (each run's finished_at in the private
# store), per trial: what each trial after the first costs, start-up costs left out.
_STEADY = """
from gridpoint.node.store.sql_store import open_store
store = open_store(home.db_url())
ends = sorted(r.detail.finished_at for r in store.list_private_runs("tiny-sentiment"))
store.close()
if len(ends) > 1:
    print("STEADY", (ends[-1] - ends[0]).total_seconds() / (len(ends) - 1), file=sys.stderr)
"""
_TUNE = _TUNE.replace("{steady}", _STEADY)
_RAY = _RAY.replace("{steady}", _STEADY)


def _run(code: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0",
           # A local bench cluster: no token file written to ~/.ray.
           "RAY_AUTH_MODE": "disabled",
           # Ray gives a 1-CPU trial one thread (OMP_NUM_THREADS=1); tune gets the same, so
           # the two differ only by Ray (on a busy machine more threads than cores thrash).
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    # Run in the checkout itself: `python -c` puts the working folder first on sys.path.
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return {
        line.split()[0]: float(line.split()[1])
        for line in done.stderr.splitlines()
        if line.startswith(("STUDY ", "START ", "STEADY ", "IMPORT "))
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
    tune_s, ray_s, ray_start, ray_import = [], [], [], []
    tune_steady, ray_steady = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="gp-rb-", dir="/tmp") as tmp:
            folder = Path(tmp)
            study = _study(folder, args.epochs)
            tune = _run(_TUNE, str(folder / "t"), study, str(args.trials))
            ray = _run(_RAY, str(folder / "r"), study, str(args.trials), str(folder / "ray"))
            tune_s.append(tune["STUDY"])
            ray_s.append(ray["STUDY"])
            ray_start.append(ray["START"])
            ray_import.append(ray["IMPORT"])
            tune_steady.append(tune.get("STEADY", float("nan")))
            ray_steady.append(ray.get("STEADY", float("nan")))
        print(f"run {repeat + 1}: tune {tune_s[-1]:.1f} s, ray {ray_s[-1]:.1f} s "
              f"(+ Ray start {ray_start[-1]:.1f} s, driver's import {ray_import[-1]:.1f} s); "
              f"after the first trial: tune {tune_steady[-1]:.2f} s/trial, "
              f"ray {ray_steady[-1]:.2f} s/trial", flush=True)  # fmt: skip
    tune_med, ray_med = statistics.median(tune_s), statistics.median(ray_s)
    per_trial = tune_med / args.trials
    overhead = (ray_med - tune_med) / args.trials
    print(
        f"{args.trials} trials, one at a time: tune {tune_med:.1f} s ({per_trial:.2f} s/trial), "
        f"Ray Tune {ray_med:.1f} s ({ray_med / args.trials:.2f} s/trial); overhead "
        f"{overhead:+.2f} s/trial = {overhead / per_trial:+.0%} of tune's time per trial; "
        f"Ray's start {statistics.median(ray_start):.1f} s (once per cluster), the driver's "
        f"import of the integration {statistics.median(ray_import):.1f} s (once per process)"
    )
    tune_next, ray_next = statistics.median(tune_steady), statistics.median(ray_steady)
    print(
        f"each trial after the first: tune {tune_next:.2f} s, Ray Tune {ray_next:.2f} s; "
        f"overhead {ray_next - tune_next:+.2f} s/trial = {(ray_next - tune_next) / tune_next:+.0%}"
    )


if __name__ == "__main__":
    main()
