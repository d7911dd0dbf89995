"""A federation's final global model: kept by the host, received by every member.

The host keeps the model its ServerApp saved after the last round as an artifact whose
readers are exactly the members whose updates were aggregated; each member then fetches it
from the host's node over the signed Artifacts service (never through Flower) and keeps it
in its own home. Must never give the model to a node that was not aggregated, nor name the
federation in anything that leaves the host (the artifact's group stays private).
"""

from __future__ import annotations

import time
from pathlib import Path

from gridpoint.errors import GridpointError, PeerError
from gridpoint.node.artifacts.store import Artifact, ArtifactStore, NewArtifact
from gridpoint.node.home import NodeHome

__all__ = ["federated_artifact_ids", "keep_global_model", "receive_global_model"]


def keep_global_model(
    home: NodeHome,
    db: str | None,
    model_dir: Path,
    *,
    federation: str,
    record_id: str,
    base_model: str,
    members: list[str],
) -> Artifact:
    """Keeps the saved global model as an artifact its members may fetch."""
    from gridpoint.node.store.sql_store import open_store

    store = open_store(home.db_url(db))
    try:
        return ArtifactStore(home, store).add(
            model_dir,
            NewArtifact(
                kind="federated",
                record_id=record_id,
                base_model=base_model,
                # A LoRA federation on a config-built base is saved merged (full weights).
                method="lora" if (model_dir / "adapter_config.json").is_file() else "full",
                group=federation,
                readers=tuple(sorted(members)),
            ),
        )
    finally:
        store.close()


def federated_artifact_ids(home: NodeHome, db: str | None, host_id: str) -> set[str]:
    """The ids of the federated models host_id lets this node fetch now."""
    from gridpoint.node.peers.artifact_pull import offered
    from gridpoint.node.peers.grpc_transport import grpc_connector
    from gridpoint.node.store.sql_store import open_store

    store = open_store(home.db_url(db))
    try:
        peer = store.get_peer(host_id)
        if peer is None:
            raise PeerError(f"{host_id} is not a trusted peer of this node")
        offers = offered(home, store, peer, grpc_connector(home))
    finally:
        store.close()
    return {offer.id for offer in offers if offer.manifest.kind == "federated"}


def receive_global_model(
    home: NodeHome,
    db: str | None,
    host_id: str,
    known: set[str],
    max_wait: float,
    federation: str,
) -> Artifact:
    """Waits for the host to keep the model of the run that just ended, then pulls it.

    `known` holds the federated models the host let this node fetch before the run: the
    run's own model is the one that appears after it (the host keeps it only once it has
    published the run, a few seconds after the last round).
    """
    from gridpoint.node.peers.artifact_pull import pull
    from gridpoint.node.store.sql_store import open_store

    deadline = time.monotonic() + max_wait
    while True:
        new = federated_artifact_ids(home, db, host_id) - known
        if len(new) == 1:
            break
        if len(new) > 1:
            raise GridpointError(
                f"the host offers {len(new)} new federated models (several federations ended "
                "at once); fetch this run's with `gridpoint model pull ID --from "
                f"{host_id[:12]}`: ids {', '.join(sorted(i[:12] for i in new))}"
            )
        if time.monotonic() >= deadline:
            raise PeerError(
                f"the host {host_id[:12]} kept no new model within {max_wait:g} s of the last "
                "round; once it has, fetch it with `gridpoint model pull ID`"
            )
        time.sleep(1.0)
    store = open_store(home.db_url(db))
    try:
        return pull(home, store, new.pop(), host_id, group=federation).artifact
    finally:
        store.close()
