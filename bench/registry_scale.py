"""The model registry's commands on a node holding 10,000 models.

    .venv/bin/python bench/registry_scale.py [--models 10000] [--names 100] [--pg URL]

Fills a fresh node home with --models tiny kept models (ArtifactStore.add: copy, hash, sign,
row), registers each as the next version of one of --names names, and gives each name a
champion and a staging alias. Times, per call, in process: register, alias set (moving a
protected alias with force), resolving NAME@champion; and end to end through the real CLI
(process start included): `model list` (table and --json), `model list NAME`, `model show NAME@champion`,
`model export NAME@champion` (copy, then the model-signing signature) and `model verify`.
With --pg the store is that PostgreSQL database (it must be empty) instead of SQLite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridpoint.node.artifacts import ArtifactStore, NewArtifact  # noqa: E402
from gridpoint.node.artifacts.registry import Registry  # noqa: E402
from gridpoint.node.home import NodeHome  # noqa: E402
from gridpoint.node.store.sql_store import open_store  # noqa: E402


def _fill(home: NodeHome, db: str | None, models: int, names: int, folder: Path) -> list[float]:
    # Filling is not what is measured: without an fsync per copied file it takes minutes,
    # not an hour, on a shared disk. Everything timed below runs with fsync restored.
    real_fsync, os.fsync = os.fsync, lambda _fd: None
    try:
        return _add_and_register(home, db, models, names, folder)
    finally:
        os.fsync = real_fsync


def _add_and_register(
    home: NodeHome, db: str | None, models: int, names: int, folder: Path
) -> list[float]:
    store = open_store(home.db_url(db))
    artifacts = ArtifactStore(home, store)
    registry = Registry(artifacts, store, home.config.registry, home.identity.node_id)
    source = folder / "model"
    source.mkdir()
    (source / "config.json").write_text('{"model_type": "bert"}\n')
    register: list[float] = []
    started = time.perf_counter()
    for i in range(models):
        (source / "model.safetensors").write_bytes(i.to_bytes(8, "big") * 128)
        artifact = artifacts.add(
            source,
            NewArtifact("trial", None, "", "full", "bench", score=i / models, metric="accuracy"),
        )
        t = time.perf_counter()
        registry.register(f"model-{i % names:03d}", artifact.id)
        register.append(time.perf_counter() - t)
        if (i + 1) % 2000 == 0:
            print(f"  {i + 1} models kept and registered ({time.perf_counter() - started:.0f} s)")
    store.close()
    return register


def _per_call(home: NodeHome, db: str | None, names: int) -> None:
    store = open_store(home.db_url(db))
    registry = Registry(ArtifactStore(home, store), store, home.config.registry,
                        home.identity.node_id)  # fmt: skip
    aliases, resolves = [], []
    for n in range(names):
        name = f"model-{n:03d}"
        for alias, version in (("staging", 1), ("champion", 1), ("champion", 2)):
            t = time.perf_counter()
            registry.set_alias(name, alias, version, force=True)
            aliases.append(time.perf_counter() - t)
        t = time.perf_counter()
        registry.resolve(f"{name}@champion")
        resolves.append(time.perf_counter() - t)
    store.close()
    print(f"alias set: median {_ms(aliases)} (p95 {_ms(aliases, 0.95)}) over {len(aliases)}")
    print(f"resolve NAME@champion: median {_ms(resolves)} (p95 {_ms(resolves, 0.95)})")


def _cli(home: NodeHome, db: str | None, *args: str) -> float:
    started = time.perf_counter()
    extra = ["--db", db] if db else []
    subprocess.run([sys.executable, "-m", "gridpoint", "--home", str(home.path), *extra, *args],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def _ms(values: list[float], q: float = 0.5) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--pg", help="an empty PostgreSQL database URL (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        home = NodeHome(folder / "home")
        home.init("Bench")
        print(f"{args.models} models under {args.names} names, "
              f"{'PostgreSQL' if args.pg else 'SQLite'}")  # fmt: skip
        register = _fill(home, args.pg, args.models, args.names, folder)
        print(f"register: median {_ms(register)} (p95 {_ms(register, 0.95)}) "
              f"over {len(register)}")  # fmt: skip
        _per_call(home, args.pg, args.names)
        ref = f"model-{args.names // 2:03d}@champion"
        for label, cmd in (
            ("model list", ["model", "list"]),
            ("model list --json", ["model", "list", "--json"]),
            (f"model list {ref.split('@')[0]}", ["model", "list", ref.split("@")[0]]),
            (f"model show {ref}", ["model", "show", ref]),
            (f"model export {ref}", ["model", "export", ref, str(folder / "out")]),
            ("model verify", ["model", "verify", str(folder / "out")]),
        ):  # fmt: skip
            times = [_cli(home, args.pg, *cmd)]
            if cmd[1] != "export":
                times += [_cli(home, args.pg, *cmd) for _ in range(2)]
            print(f"{label}: {statistics.median(times):.2f} s (CLI, process start included)")
        baseline = statistics.median(_cli(home, args.pg, "--help") for _ in range(3))
        print(f"(`gridpoint --help` alone: {baseline:.2f} s)")


if __name__ == "__main__":
    main()
