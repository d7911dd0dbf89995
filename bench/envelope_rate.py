"""Ed25519 sign/verify rates through `cryptography`, beside gridpoint's envelope paths.

Prints operations per second for: raw sign, raw verify (same 1 KiB-ish payload), and
gridpoint's sign+serialize and parse+verify of a RunRecord envelope, and a full admit
(parse, verify, decode and validate the record, as sync does), measured side by side in
one run; the ratio verify path / raw verify is the overhead figure (goal >= 0.70).

    python bench/envelope_rate.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridpoint.node.catalog import admit
from gridpoint.node.protocol.envelope import sign_envelope, verify_envelope
from gridpoint.node.protocol.identity import NodeIdentity
from gridpoint.node.protocol.serde import RUN_RECORD_TYPE, encode_record
from gridpoint.schema import BaseModelInfo, CurvePoint, RunRecord, TaskDescriptor
from gridpoint.v1 import envelope_pb2


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            fn()
        n += 100
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    record = RunRecord(
        task=TaskDescriptor("text-classification", 2, "1k-10k", "high", "en", "32-128"),
        model=BaseModelInfo("bert-base-uncased", "bert", 110_000_000),
        hyperparameters={"learning_rate": 3e-5, "batch_size": 32, "warmup_ratio": 0.1},
        curve=tuple(CurvePoint(50 * i, "accuracy", 0.5 + i / 100) for i in range(1, 21)),
        metrics={"accuracy": 0.85, "eval_loss": 0.4},
    )
    payload = encode_record(record)
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    raw_sig = key.sign(payload)
    identity = NodeIdentity.generate()
    wire = sign_envelope(identity, payload, RUN_RECORD_TYPE).SerializeToString()
    trusted = {identity.node_id}.__contains__

    figures = {
        "raw_sign": rate(lambda: key.sign(payload), args.seconds),
        "raw_verify": rate(lambda: public.verify(raw_sig, payload), args.seconds),
        "envelope_sign_serialize": rate(
            lambda: sign_envelope(
                identity, encode_record(record), RUN_RECORD_TYPE
            ).SerializeToString(),
            args.seconds,
        ),
        "envelope_parse_verify": rate(
            lambda: verify_envelope(
                envelope_pb2.SignedEnvelope.FromString(wire),
                expected_type=RUN_RECORD_TYPE,
                is_trusted=trusted,
            ),
            args.seconds,
        ),
        "record_admit": rate(
            lambda: admit(envelope_pb2.SignedEnvelope.FromString(wire), trusted), args.seconds
        ),
    }
    print(f"payload bytes: {len(payload)}")
    for name, value in figures.items():
        print(f"{name:>26}: {value:10.0f} /s")
    print(
        f"{'sign path / raw sign':>26}: {figures['envelope_sign_serialize'] / figures['raw_sign']:.2f}"
    )
    print(
        f"{'verify path / raw verify':>26}: {figures['envelope_parse_verify'] / figures['raw_verify']:.2f}  (goal >= 0.70)"
    )
    print(
        f"{'admit / raw verify':>26}: {figures['record_admit'] / figures['raw_verify']:.2f}  (verify + decode + validate)"
    )


if __name__ == "__main__":
    main()
