"""Update signatures: what the ServerApp accepts and what it leaves out (real Ed25519)."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord

from gridpoint.errors import BadSignature, UnknownSigner
from gridpoint.federation.update_signing import (
    UpdateContext,
    sign_update,
    update_digest,
    verify_update,
)
from gridpoint.node.protocol.identity import NodeIdentity

MEMBER = NodeIdentity.generate()
STRANGER = NodeIdentity.generate()
CTX = UpdateContext("fed-a", 2, 2**63 + 5, "msg-1")
ARRAYS = {"w": ("float32", (2, 2), bytes(range(16))), "b": ("float32", (2,), bytes(8))}
METRICS = {"num-examples": 10.0, "accuracy": 0.75}
TRUSTED = {MEMBER.node_id: MEMBER.public_key}


def signed(ctx: UpdateContext = CTX, identity: NodeIdentity = MEMBER) -> ConfigRecord:
    return sign_update(identity, update_digest(ctx, identity.node_id, ARRAYS, METRICS))


def test_a_signed_update_verifies_as_its_member() -> None:
    digest = update_digest(CTX, MEMBER.node_id, ARRAYS, METRICS)
    assert verify_update(signed(), digest, TRUSTED) == MEMBER.node_id


@pytest.mark.parametrize(
    "changed",
    [
        {"arrays": {**ARRAYS, "w": ("float32", (2, 2), bytes(range(15)) + b"\xff")}},
        {"arrays": {**ARRAYS, "w": ("float16", (2, 2), bytes(range(16)))}},
        {"arrays": {**ARRAYS, "w": ("float32", (4,), bytes(range(16)))}},
        {"metrics": {**METRICS, "num-examples": 1000.0}},
        {"ctx": UpdateContext("fed-a", 3, CTX.run_id, "msg-1")},
        {"ctx": UpdateContext("fed-b", 2, CTX.run_id, "msg-1")},
        {"ctx": UpdateContext("fed-a", 2, CTX.run_id, "msg-2")},
    ],
)
def test_any_change_to_bytes_round_or_federation_is_refused(changed: dict[str, object]) -> None:
    digest = update_digest(
        changed.get("ctx", CTX),  # type: ignore[arg-type]
        MEMBER.node_id,
        changed.get("arrays", ARRAYS),  # type: ignore[arg-type]
        changed.get("metrics", METRICS),  # type: ignore[arg-type]
    )
    with pytest.raises(BadSignature):
        verify_update(signed(), digest, TRUSTED)


def test_unsigned_and_untrusted_updates_are_refused() -> None:
    digest = update_digest(CTX, STRANGER.node_id, ARRAYS, METRICS)
    with pytest.raises(UnknownSigner):
        verify_update(signed(identity=STRANGER), digest, TRUSTED)
    with pytest.raises(BadSignature):
        verify_update({}, digest, TRUSTED)
