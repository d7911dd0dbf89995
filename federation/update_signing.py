"""Signatures on weight updates, bound to federation, round, run and signer.

A member signs SHA-256 over: the protocol tag, federation name, server round, run id,
the id of the message it answers, its node id, then every array (name, dtype, shape,
bytes, in name order) and every metric (name, value). The server recomputes the digest
from the bytes it received; a changed byte, another round or another federation fails.

Under SecAgg+ (secure_round.py) a reply is a protocol message rather than an update: its
parts are then every record it carries (secure_parts): public keys, encrypted shares, the
masked vector, unmasking shares and the legacy metrics, each encoded without ambiguity.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from gridpoint.errors import BadSignature, UnknownSigner
from gridpoint.node.protocol.envelope import signing_message
from gridpoint.node.protocol.identity import NodeIdentity, node_id_of, verify_signature
from gridpoint.schema.validation import shown

__all__ = [
    "SIGNATURE_RECORD",
    "UpdateContext",
    "config_int",
    "secure_parts",
    "sign_update",
    "update_digest",
    "update_parts",
    "verify_update",
]

SIGNATURE_RECORD = "gridpoint-signature"
_TAG = b"gridpoint.v1/fed-update"


@dataclass(frozen=True)
class UpdateContext:
    """What an update is bound to."""

    federation: str
    server_round: int
    run_id: int
    reply_to: str


def update_digest(
    ctx: UpdateContext,
    signer_id: str,
    arrays: Mapping[str, tuple[str, tuple[int, ...], bytes]],
    metrics: Mapping[str, float],
) -> bytes:
    """SHA-256 of the update. arrays maps name -> (dtype, shape, raw bytes)."""
    h = hashlib.sha256()
    h.update(
        signing_message(
            _TAG,
            ctx.federation.encode(),
            struct.pack(">q", ctx.server_round),
            struct.pack(">Q", ctx.run_id),
            ctx.reply_to.encode(),
            signer_id.encode(),
        )
    )
    for name in sorted(arrays):
        dtype, shape, data = arrays[name]
        h.update(
            signing_message(
                b"array", name.encode(), dtype.encode(), repr(tuple(shape)).encode(), data
            )
        )
    for name in sorted(metrics):
        h.update(signing_message(b"metric", name.encode(), struct.pack(">d", float(metrics[name]))))
    return h.digest()


def sign_update(identity: NodeIdentity, digest: bytes) -> ConfigRecord:
    """The signature record a member attaches to its reply."""
    return ConfigRecord(
        {
            "signer_id": identity.node_id,
            "public_key": identity.public_key,
            "signature": identity.sign(digest),
        }
    )


def verify_update(record: Mapping[str, object], digest: bytes, trusted: Mapping[str, bytes]) -> str:
    """Checks a signature record against the recomputed digest; returns the signer id.

    trusted maps node id -> public key of the members allowed to contribute (None for
    peers whose key is learnt from the record, checked against the node id).
    """
    signer = record.get("signer_id")
    public_key = record.get("public_key")
    signature = record.get("signature")
    if (
        not isinstance(signer, str)
        or not isinstance(public_key, bytes)
        or not isinstance(signature, bytes)
    ):
        raise BadSignature("update is not signed")
    if signer not in trusted:
        raise UnknownSigner(f"update signed by {shown(signer)}, not a trusted peer of the host")
    if node_id_of(public_key) != signer:
        raise BadSignature("update signer's key does not match its node id")
    verify_signature(public_key, signature, digest)
    return signer


def update_parts(
    content: RecordDict,
) -> tuple[dict[str, tuple[str, tuple[int, ...], bytes]], dict[str, float]]:
    """What a signature covers in a reply: every array (dtype, shape, bytes) and metric.

    An evaluation reply carries metrics only: its arrays are then none.
    """
    records = content.array_records
    arrays = {
        name: (array.dtype, tuple(array.shape), array.data)
        for name, array in (records["arrays"].items() if "arrays" in records else ())
    }
    metrics: dict[str, float] = {}
    for name, value in content.metric_records["metrics"].items():
        if not isinstance(value, int | float):
            raise ValueError(f"metric {shown(name)} is not a number")
        metrics[name] = float(value)
    return arrays, metrics


def config_int(record: ConfigRecord, key: str) -> int:
    """An integer from a Flower ConfigRecord; ValueError names a missing or non-integer key."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"config {key!r} is not a number")
    return int(value)


def secure_parts(
    content: RecordDict,
) -> tuple[dict[str, tuple[str, tuple[int, ...], bytes]], dict[str, float]]:
    """What a signature covers in a SecAgg+ reply: every record but the signature itself.

    Config values (keys, ciphertexts, the masked vector's bytes, shares) are digested as
    pseudo-arrays "record/key" of dtype "config"; array and metric records as usual.
    """
    arrays: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    for record_name, record in content.config_records.items():
        if record_name == SIGNATURE_RECORD:
            continue
        for key, value in record.items():
            arrays[f"config:{record_name}/{key}"] = ("config", (), _config_bytes(value))
    for record_name, array_record in content.array_records.items():
        for key, array in array_record.items():
            arrays[f"array:{record_name}/{key}"] = (array.dtype, tuple(array.shape), array.data)
    metrics: dict[str, float] = {}
    for record_name, metric_record in content.metric_records.items():
        for key, number in metric_record.items():
            if not isinstance(number, int | float):
                raise ValueError(f"metric {shown(key)} is not a number")
            metrics[f"{record_name}/{key}"] = float(number)
    return arrays, metrics


def _config_bytes(value: object) -> bytes:
    """A config value, typed and length-prefixed: no two values encode alike."""
    items = value if isinstance(value, list) else [value]
    parts = [b"list" if isinstance(value, list) else b"one"]
    for item in items:
        data = item if isinstance(item, bytes) else repr(item).encode()
        parts += [type(item).__name__.encode(), data]
    return signing_message(*parts)
