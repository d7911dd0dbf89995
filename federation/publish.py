"""Publishing a finished federation as a signed, anonymized RunRecord (kind federated)."""

from __future__ import annotations

from typing import Any

from node.anonymize import anonymize_federation
from node.catalog import publish
from node.errors import GridpointError
from node.home import NodeHome

__all__ = ["publish_federation"]


def publish_federation(home: NodeHome, opts: Any, outcome: dict[str, Any]) -> dict[str, Any]:
    from node.sql_store import open_store
    from trainers.models import model_family_and_public_id
    from trainers.study_config import load_study_config

    study = load_study_config(opts.study)
    family, public_id = model_family_and_public_id(study.model)
    result = outcome["result"]
    if not result["members"]:
        raise GridpointError(
            "no member's update was aggregated in any round (see the refusals above); nothing published"
        )
    curve = [
        (int(r), m) for r, m in sorted(result["train_metrics"].items(), key=lambda kv: int(kv[0]))
    ]
    record = anonymize_federation(
        federation=opts.federation,
        curve=curve,
        params=outcome["params"],
        members=result["members"],
        task=outcome["task"],
        study=study,
        lora=opts.lora,
        model_family=family,
        public_model_id=public_id,
        num_parameters=int(outcome["start"].get("parameters", 0)),
        secret=home.secret,
        policy=home.config.anonymizer,
    )
    store = open_store(home.db_url(opts.db))
    try:
        published = publish(store, home.identity, record)
    finally:
        store.close()
    return {
        "federation": opts.federation,
        "record_id": published.id,
        "run_id": outcome["run_id"],
        "rounds": outcome["rounds"],
        "members": result["members"],
        "model_changed": result["initial_digest"] != result["final_digest"],
        "initial_payload_bytes": outcome["start"].get("payload_bytes"),
    }
