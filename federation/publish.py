"""Publishing a finished federation as a signed, anonymized RunRecord (kind federated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gridpoint.errors import GridpointError
from gridpoint.federation.host import HostOptions, HostOutcome
from gridpoint.node.catalog import publish
from gridpoint.node.home import NodeHome
from gridpoint.node.tuning.anonymize import anonymize_federation

__all__ = ["FederationSummary", "publish_federation"]


@dataclass(frozen=True)
class FederationSummary:
    """What `fed host` reports: the published record and how the run went."""

    federation: str
    record_id: str
    run_id: int
    rounds: list[dict[str, Any]]
    members: list[str]
    model_changed: bool
    initial_payload_bytes: int | None
    #: The public id of the base model ("" when private or built from a config).
    base_model: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "federation": self.federation,
            "record_id": self.record_id,
            "run_id": self.run_id,
            "rounds": self.rounds,
            "members": self.members,
            "model_changed": self.model_changed,
            "initial_payload_bytes": self.initial_payload_bytes,
        }


def publish_federation(
    home: NodeHome, opts: HostOptions, outcome: HostOutcome
) -> FederationSummary:
    """Anonymizes, signs and stores the federated run; GridpointError if nobody was aggregated."""
    from gridpoint.node.store.sql_store import open_store
    from gridpoint.trainers.models import model_family_and_public_id
    from gridpoint.trainers.study_config import load_study_config

    study = load_study_config(opts.study)
    family, public_id = model_family_and_public_id(study.model)
    result = outcome.result
    if not result.members:
        raise GridpointError(
            "no member's update was aggregated in any round (see the refusals above); nothing published"
        )
    record = anonymize_federation(
        federation=opts.federation,
        curve=sorted(result.train_metrics.items()),
        params=outcome.params,
        members=result.members,
        task=outcome.task,
        study=study,
        lora=opts.lora,
        model_family=family,
        public_model_id=public_id,
        num_parameters=int(outcome.start.get("parameters", 0)),
        secret=home.secret,
        policy=home.config.anonymizer,
        parents=outcome.parents,
    )
    store = open_store(home.db_url(opts.db))
    try:
        published = publish(store, home.identity, record)
    finally:
        store.close()
    payload = outcome.start.get("payload_bytes")
    return FederationSummary(
        federation=opts.federation,
        record_id=published.id,
        run_id=outcome.run_id,
        rounds=outcome.rounds,
        members=result.members,
        model_changed=result.initial_digest != result.final_digest,
        initial_payload_bytes=int(payload) if payload is not None else None,
        base_model=public_id,
    )
