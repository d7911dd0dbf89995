"""Artifact transfer over loopback, beside the raw SHA-256 rate and a plain file copy.

Node A (a real `gridpoint node start` process) holds an artifact of --mb megabytes of random
bytes, shared with node B; a child process of B pulls it with the code `model pull` uses
(signed manifest, every chunk's SHA-256 checked before it is written, streamed to disk, each
file's digest checked, placed by a rename). Printed, all measured in this run on this
machine: the raw SHA-256 rate, a plain file copy, the pull rate (MB/s verified and written)
and its ratio to the slower of the two (goal >= 0.50), and the pulling process's peak RSS
above its idle RSS (goal < 200 MB).

    python bench/artifact_transfer.py [--mb 500]
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
    parser.add_argument("--child", nargs=2, metavar=("HOME", "ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    work = Path(tempfile.mkdtemp(prefix="gp-bench-artifact-"))
    try:
        run(work, args.mb)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, size_mb: int) -> None:
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
    # The machine is shared: each baseline is the median of three runs.
    sha = statistics.median(sha256_rate(weights) for _ in range(3))
    copy = statistics.median(copy_rate(weights, work / "copy.bin") for _ in range(3))
    store_a = open_store(a.db_url())
    start = time.perf_counter()
    artifact = ArtifactStore(a, store_a).add(
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
    shutil.rmtree(folder)
    daemon = Daemon.start(a)
    try:
        pin(store_a, b, "127.0.0.1:9")
        store_a.close()
        store_b = open_store(b.db_url())
        pin(store_b, a, daemon.address)
        store_b.close()
        os.sync()
        served_from = _cpu_s(daemon.process.pid)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(b.path), artifact.id],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        served = _cpu_s(daemon.process.pid) - served_from
    finally:
        daemon.kill()
    report = json.loads(out.stdout)
    rate = report["bytes"] / MB / report["seconds"]
    slower = min(sha, copy)
    above_idle = report["peak"] - report["idle"]
    print(f"artifact: {report['bytes'] / MB:.0f} MiB, chunk 1 MiB, loopback mTLS")
    print(f"raw SHA-256 (page cache):        {sha:8.0f} MB/s")
    print(f"plain file copy (cp, +fsync):    {copy:8.0f} MB/s")
    print(f"add (copy + chunk hashes + sign):{add_rate:8.0f} MB/s")
    print(f"pull (verified and written):     {rate:8.0f} MB/s  ({report['seconds']:.2f} s)")
    print(f"pull / slower of the two:        {rate / slower:8.2f}  (goal >= 0.50)")
    size = report["bytes"] / MB
    print(
        f"CPU per pull: puller {report['cpu']:.2f} s ({size / report['cpu']:.0f} MB per CPU-s), "
        f"serving daemon {served:.2f} s ({size / max(served, 1e-9):.0f} MB per CPU-s)"
    )
    print(
        f"pulling process RSS: idle {report['idle']:.0f} MB, peak {report['peak']:.0f} MB, "
        f"{above_idle:.0f} MB above idle (goal < 200)"
    )


if __name__ == "__main__":
    main()
