"""Federation round overhead: what gridpoint adds to a round, against the round itself.

For a model of at least 10M parameters, times in one process: turning weights into a
Flower ArrayRecord (serialization), hashing and signing an update (member side), recomputing
the digest and verifying it (host side, per member), and FedAvg aggregation of N members'
updates; and beside them one member's local training for a round on small data. Prints each
part, their share of (local training + the measured fixed Flower cost per round, --flower-s),
and the LoRA payload against full weights for the same model.

    python bench/fed_overhead.py [--members 2] [--flower-s 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flwr.app import RecordDict  # noqa: E402
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords  # noqa: E402

from gridpoint.federation.model_state import build_model, get_weights  # noqa: E402
from gridpoint.federation.update_signing import (  # noqa: E402
    UpdateContext,
    sign_update,
    update_digest,
    verify_update,
)
from gridpoint.node.protocol.identity import NodeIdentity  # noqa: E402
from gridpoint.trainers.finetune import FineTuneSettings, finetune  # noqa: E402
from gridpoint.trainers.pipeline import LabeledTexts  # noqa: E402
from gridpoint.trainers.study_config import ModelSpec  # noqa: E402

CONFIG = {
    "model_type": "bert",
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "intermediate_size": 2048,
    "max_position_embeddings": 128,
}


def timed(fn, repeats: int = 3) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument(
        "--flower-s",
        type=float,
        default=8.0,
        help="Flower's fixed cost per train round here (notes/flower.md: ~8 s)",
    )
    args = parser.parse_args()
    spec = ModelSpec(config=CONFIG, max_length=64)
    loaded = build_model(spec, 2, None, seed=0)
    params = sum(p.numel() for p in loaded.model.parameters())
    identity = NodeIdentity.generate()
    ctx = UpdateContext("bench", 1, 42, "message")
    t_ser, arrays = timed(lambda: get_weights(loaded.model, lora=False))
    raw = {k: (a.dtype, tuple(a.shape), a.data) for k, a in arrays.items()}  # type: ignore[union-attr]
    metrics = {"num-examples": 100.0, "accuracy": 0.5}
    t_sign, record = timed(
        lambda: sign_update(identity, update_digest(ctx, identity.node_id, raw, metrics))
    )
    t_verify, _ = timed(
        lambda: verify_update(
            record,
            update_digest(ctx, identity.node_id, raw, metrics),
            {identity.node_id: identity.public_key},
        )
    )  # type: ignore[arg-type]
    replies = [
        RecordDict(
            {
                "arrays": arrays,
                "metrics": __import__("flwr.app", fromlist=["MetricRecord"]).MetricRecord(metrics),
            }
        )
        for _ in range(args.members)
    ]
    t_agg, _ = timed(lambda: aggregate_arrayrecords(replies, "num-examples"))
    texts = [("good movie " if i % 2 else "bad movie ") * 5 for i in range(args.samples)]
    data = LabeledTexts(texts, [i % 2 for i in range(args.samples)], ["0", "1"])
    settings = FineTuneSettings(
        learning_rate=1e-4,
        batch_size=16,
        epochs=1,
        warmup_ratio=0.0,
        weight_decay=0.0,
        eval_interval=10**9,
        max_length=64,
        seed=0,
    )
    start = time.perf_counter()
    finetune(loaded, data, LabeledTexts(texts[:32], data.labels[:32], ["0", "1"]), settings)
    t_train = time.perf_counter() - start
    member = t_ser + t_sign
    host = args.members * t_verify + t_agg + t_ser
    round_s = t_train + args.flower_s + member + host
    lora = build_model(spec, 2, 8, seed=0)
    full_bytes = sum(len(a.data) for a in arrays.values())  # type: ignore[union-attr]
    lora_bytes = sum(len(a.data) for a in get_weights(lora.model, lora=True).values())
    print(f"model: config-built BERT, {params / 1e6:.1f}M parameters; {args.members} members")
    print(f"serialize weights -> ArrayRecord: {t_ser * 1000:8.1f} ms")
    print(f"member: digest + sign update:     {t_sign * 1000:8.1f} ms")
    print(f"host: digest + verify, per member:{t_verify * 1000:8.1f} ms")
    print(f"host: FedAvg of {args.members} updates:        {t_agg * 1000:8.1f} ms")
    print(
        f"local training ({args.samples} samples, 1 epoch): {t_train:.1f} s; Flower fixed cost assumed {args.flower_s:.0f} s"
    )
    print(
        f"gridpoint + aggregation share of round wall time: {(member + host) / round_s * 100:.2f}%  (goal < 5%)"
    )
    print(
        f"  signing + verification alone: {(t_sign + args.members * t_verify) / round_s * 100:.2f}%"
    )
    print(
        f"payload per update: full {full_bytes / 1e6:.1f} MB, LoRA r=8 {lora_bytes / 1e6:.3f} MB ({full_bytes / lora_bytes:.0f}x smaller)"
    )


if __name__ == "__main__":
    main()
