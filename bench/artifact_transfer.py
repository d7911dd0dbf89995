"""Artifact transfer over loopback, beside the raw SHA-256 rate and a plain file copy.

Node A (a real `gridpoint node start` process) holds an artifact of --mb megabytes of random
bytes, shared with node B; a child process of B pulls it with the code `model pull` uses
(signed manifest, every chunk's SHA-256 checked before it is written, streamed to disk, each
file's digest checked, placed by a rename). Printed for each pull, all measured in this run
on this machine, right before it: the raw SHA-256 rate, a plain file copy; then the pull rate
(MB/s verified and written) and its ratio to the slower of the two (goal >= 0.50), and the
pulling process's peak RSS above its idle RSS (goal < 200 MB). With --baseline DIR (a
checkout of another version, e.g. `git archive COMMIT | tar -x -C DIR`), that version's
puller pulls too, alternately with this one's, from the same serving daemon (this version's).

    python bench/artifact_transfer.py [--mb 500] [--runs 3] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gridpoint.node.artifacts import ArtifactStore, NewArtifact  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402
from tests.helpers import Daemon, pin  # noqa: E402

MB = 1024 * 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(home: Path, artifact_id: str) -> None:
    """Runs in the pulling process: pull, then report time and memory as JSON."""
    from gridpoint.node.peers.artifact_pull import pull

    node = NodeHome(home)
    store = open_store(node.db_url())
    idle = _rss_mb()
    cpu = time.process_time()
    start = time.perf_counter()
    artifact = pull(node, store, artifact_id).artifact
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    report = {"seconds": seconds, "cpu": cpu, "bytes": artifact.bytes, "idle": idle, "peak": peak}
    print(json.dumps(report))


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sha256_rate(path: Path) -> float:
    os.sync()
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MB):
            digest.update(block)
    return path.stat().st_size / MB / (time.perf_counter() - start)


def copy_rate(path: Path, dest: Path) -> float:
    # Every measurement starts with no dirty pages: the disk's write-back is the same for all.
    os.sync()
    start = time.perf_counter()
    shutil.copyfile(path, dest)
    with dest.open("rb+") as f:
        os.fsync(f.fileno())
    rate = path.stat().st_size / MB / (time.perf_counter() - start)
    dest.unlink()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=500, help="artifact size in MiB")
    parser.add_argument("--runs", type=int, default=1, help="pulls per version (median)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a checkout of another version whose puller runs alternately with this one's",
    )
    parser.add_argument("--child", nargs=2, metavar=("HOME", "ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    work = Path(tempfile.mkdtemp(prefix="gp-bench-artifact-"))
    try:
        run(work, args.mb, args.runs, args.baseline)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, size_mb: int, runs: int, baseline: Path | None) -> None:
    print(f"load average at start: {_load()}")
    a, b = NodeHome(work / "a"), NodeHome(work / "b")
    a.init("A")
    b.init("B")
    folder = work / "model"
    folder.mkdir()
    weights = folder / "model.safetensors"
    with weights.open("wb") as out:
        for _ in range(size_mb):
            out.write(os.urandom(MB))
    (folder / "config.json").write_text("{}\n")
    store_a = open_store(a.db_url())
    start = time.perf_counter()
    artifacts = ArtifactStore(a, store_a)
    artifact = artifacts.add(
        folder,
        NewArtifact(
            kind="trial",
            record_id=None,
            base_model="",
            method="full",
            group="bench",
            readers=(b.identity.node_id,),
        ),
    )
    add_rate = artifact.bytes / MB / (time.perf_counter() - start)
    kept = artifacts.folder(artifact) / "model.safetensors"
    shutil.rmtree(folder)
    daemon = Daemon.start(a)
    versions = [("this", ROOT)] + ([("baseline", baseline.resolve())] if baseline else [])
    rows: list[dict[str, float | str]] = []
    try:
        pin(store_a, b, "127.0.0.1:9")
        store_a.close()
        store_b = open_store(b.db_url())
        pin(store_b, a, daemon.address)
        store_b.close()
        # Every pull starts from this node B: pinned to A, holding nothing.
        fresh = work / "b-fresh"
        shutil.copytree(b.path, fresh)
        for i in range(runs):
            # Alternately, and each version first every other run.
            for label, tree in versions if i % 2 == 0 else versions[::-1]:
                shutil.rmtree(b.path)
                shutil.copytree(fresh, b.path)
                rows.append(
                    {"version": label, **_pull_beside_baselines(tree, kept, b, artifact.id, daemon)}
                )
    finally:
        daemon.kill()
    print(f"artifact: {artifact.bytes / MB:.0f} MiB, chunk 1 MiB, loopback mTLS")
    print(f"add (copy + chunk hashes + sign): {add_rate:.0f} MB/s")
    print(
        "version   raw SHA-256  cp+fsync  pull MB/s  pull/slower  puller CPU  "
        "server CPU  RSS above idle"
    )
    for row in rows:
        print(
            f"{row['version']:9} {row['sha']:8.0f}    {row['copy']:8.0f}  {row['rate']:9.0f}  "
            f"{row['ratio']:11.2f}  {row['cpu']:8.2f} s  {row['served']:8.2f} s  "
            f"{row['rss']:8.0f} MB"
        )
    for label, _ in versions:
        mine = [r for r in rows if r["version"] == label]
        print(
            f"median of {len(mine)}, {label}: pull {_median(mine, 'rate'):.0f} MB/s, "
            f"pull / slower {_median(mine, 'ratio'):.2f} (goal >= 0.50), "
            f"puller CPU {_median(mine, 'cpu'):.2f} s "
            f"({artifact.bytes / MB / _median(mine, 'cpu'):.0f} MB per CPU-s), "
            f"RSS above idle at most {max(float(r['rss']) for r in mine):.0f} MB (goal < 200)"
        )
    print(f"load average at end: {_load()}")


def _pull_beside_baselines(
    tree: Path, kept: Path, b: NodeHome, artifact_id: str, daemon: Daemon
) -> dict[str, float]:
    """One pull by the puller of the checkout at tree, right after this machine's raw
    SHA-256 and copy rates (each the median of three: the machine is shared)."""
    sha = statistics.median(sha256_rate(kept) for _ in range(3))
    copy = statistics.median(copy_rate(kept, b.path.parent / "copy.bin") for _ in range(3))
    os.sync()
    served_from = _cpu_s(daemon.process.pid)
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "artifact_transfer.py"), "--child"]
        + [str(b.path), artifact_id],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    served = _cpu_s(daemon.process.pid) - served_from
    report = json.loads(out.stdout)
    rate = report["bytes"] / MB / report["seconds"]
    return {
        "sha": sha,
        "copy": copy,
        "rate": rate,
        "ratio": rate / min(sha, copy),
        "cpu": report["cpu"],
        "served": served,
        "rss": report["peak"] - report["idle"],
    }


def _median(rows: list[dict[str, float | str]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
