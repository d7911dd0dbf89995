"""SecAgg+ beside a plain round: what secure aggregation costs per round, for N members.

In one process, with Flower's real SecAggPlusWorkflow and secaggplus_mod and gridpoint's
signing on every message (tests/federation/loopback.py hands each message to its member's
ClientApp as a SuperLink would): the time of one SecAgg+ round (4 stages: keys, encrypted
shares, masked vectors, unmasking) against one plain round (each member signs its update,
the host verifies every update and averages them), for 2, 5 and 10 members, with a LoRA
payload and with full weights. Training and Flower's transport are left out: they are the
same in both. The last column estimates a deployed round: a plain round's fixed Flower cost
(--flower-s, train + evaluate, notes/flower.md: 15-16 s on 2 cores) plus, for SecAgg+, three
more message exchanges of --exchange-s each (a SuperNode's 3 s poll and a fresh ClientApp
process, about 2 s); measure both on your deployment and pass them.

    python bench/fed_secagg.py [--members 2 5 10] [--lora-params 300000] [--full-params 1000000]
        [--flower-s 16] [--exchange-s 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from flwr.app import Array, ArrayRecord  # noqa: E402

from gridpoint.federation.flower_nodes import unrecorded  # noqa: E402
from gridpoint.federation.member_failures import FailureGrid  # noqa: E402
from gridpoint.federation.secure_round import (  # noqa: E402
    SecureSettings,
    SignedGrid,
    secure_train_round,
)
from gridpoint.federation.server_app import _verify  # noqa: E402
from gridpoint.federation.update_signing import (  # noqa: E402
    UpdateContext,
    secure_parts,
    sign_update,
    update_digest,
    verify_update,
)
from gridpoint.node.home import NodeHome  # noqa: E402
from tests.federation.loopback import RUN_ID, LoopbackGrid, member_app, member_context  # noqa: E402

FEDERATION = "bench"


def _update(seed: int, params: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    half = params // 2
    return {
        "a": rng.normal(0, 0.05, half).astype(np.float32),
        "b": rng.normal(0, 0.05, params - half).astype(np.float32),
    }


def _plain(homes: list[NodeHome], updates: list[dict[str, np.ndarray]]) -> float:
    started = time.perf_counter()
    trusted = {h.identity.node_id: h.identity.public_key for h in homes}
    signed = []
    for i, (home, update) in enumerate(zip(homes, updates, strict=True)):
        ctx = UpdateContext(FEDERATION, 1, RUN_ID, f"m{i}")
        arrays = {k: ("float32", v.shape, v.tobytes()) for k, v in update.items()}
        metrics = {"num-examples": 100.0}
        digest = update_digest(ctx, home.identity.node_id, arrays, metrics)
        signed.append((ctx, home, arrays, metrics, sign_update(home.identity, digest)))
    for ctx, home, arrays, metrics, record in signed:
        verify_update(record, update_digest(ctx, home.identity.node_id, arrays, metrics), trusted)
    average = {k: np.mean([u[k] for u in updates], axis=0) for k in updates[0]}
    assert average
    return time.perf_counter() - started


def _secure(homes: list[NodeHome], updates: list[dict[str, np.ndarray]]) -> float:
    members = {}
    for i, (home, update) in enumerate(zip(homes, updates, strict=True)):
        members[100 + i] = (member_app(update, 100), member_context(home.path, 100 + i, FEDERATION))
    loop = LoopbackGrid(members)
    trusted = {h.identity.node_id: h.identity.public_key for h in homes}
    # As the round loop does: the SuperLink's error replies set apart, members named by node id.
    failures = FailureGrid(loop, unrecorded)  # type: ignore[arg-type]
    grid = SignedGrid(failures, lambda r, n: _verify(r, FEDERATION, n, trusted, secure_parts), 1)
    start = ArrayRecord({k: Array(np.zeros_like(v)) for k, v in updates[0].items()})
    started = time.perf_counter()
    average, summed = secure_train_round(
        grid, sorted(members), start, {"federation": FEDERATION}, SecureSettings()
    )
    took = time.perf_counter() - started
    assert average is not None and len(summed) == len(homes)
    expected = np.mean([u["a"] for u in updates], axis=0)
    assert np.abs(average["a"].numpy() - expected).max() < 1e-3
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--lora-params", type=int, default=300_000)
    ap.add_argument("--full-params", type=int, default=1_000_000)
    ap.add_argument(
        "--flower-s",
        type=float,
        default=16.0,
        help="a plain round's fixed Flower cost (train + evaluate) measured on a deployment",
    )
    ap.add_argument(
        "--exchange-s",
        type=float,
        default=5.0,
        help="Flower's fixed cost of one more message exchange (poll + ClientApp start)",
    )
    args = ap.parse_args()
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        homes = []
        for i in range(max(args.members)):
            home = NodeHome(Path(tmp) / f"m{i}")
            home.init(f"m{i}")
            homes.append(home)
        print(
            f"{'payload':>8} {'members':>7} {'plain s':>8} {'secagg s':>9} {'x (crypto only)':>16} "
            f"{'x deployed (est.)':>18}"
        )
        for label, params in (("lora", args.lora_params), ("full", args.full_params)):
            for n in args.members:
                updates = [_update(i, params) for i in range(n)]
                plain = _plain(homes[:n], updates)
                secure = _secure(homes[:n], updates)
                # A SecAgg+ round has 3 more message exchanges than a plain one.
                deployed = (secure + args.flower_s + 3 * args.exchange_s) / (plain + args.flower_s)
                print(
                    f"{label:>8} {n:>7} {plain:>8.2f} {secure:>9.2f} {secure / plain:>16.1f} "
                    f"{deployed:>18.2f}"
                )


if __name__ == "__main__":
    main()
