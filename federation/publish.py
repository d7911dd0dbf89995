"""Publishing a finished federation as a signed, anonymized RunRecord (kind federated).

The run is handed to the node's publishing service (node/publishing/service.py) as a typed private
run, like every trial: anonymized, signed, and stored with its private part (federation name,
run number, every round's metrics) in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gridpoint.errors import GridpointError
from gridpoint.federation.host import HostOptions, HostOutcome
from gridpoint.node.home import NodeHome
from gridpoint.node.publishing.service import PublishingService
from gridpoint.node.store.base import ModelRef, PrivateRun, RunDetail
from gridpoint.schema import CurvePoint, PrivacyGuarantee

if TYPE_CHECKING:
    from gridpoint.trainers.study_config import StudyConfig

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
    #: Round 0: the starting model evaluated by the members ({} if no member evaluated it).
    baseline: dict[str, Any] | None = None
    #: The last round completed before the host was restarted (0: never).
    resumed_after: int = 0
    #: The published guarantee under --dp (None: exact).
    privacy: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "federation": self.federation,
            "record_id": self.record_id,
            "run_id": self.run_id,
            "rounds": self.rounds,
            "members": self.members,
            "model_changed": self.model_changed,
            "initial_payload_bytes": self.initial_payload_bytes,
            "baseline": self.baseline or {},
            "resumed_after": self.resumed_after,
            "privacy": self.privacy,
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
    final = result.train_metrics[max(result.train_metrics)] if result.train_metrics else {}
    store = open_store(home.db_url(opts.db))
    try:
        # Flower's run id is a 64-bit unsigned number: it is kept in the detail, and the
        # federation's runs are numbered here in the order they finished.
        number = len(store.list_private_runs(opts.federation, kind="federated"))
        published = PublishingService(home, store).publish(
            _private_run(opts, outcome, study, family, public_id, number, final),
            parents=outcome.parents,
        )
    finally:
        store.close()
    payload = outcome.start.get("payload_bytes")
    return FederationSummary(
        federation=opts.federation,
        record_id=published.record_id or "",
        run_id=outcome.run_id,
        rounds=outcome.rounds,
        members=result.members,
        model_changed=result.initial_digest != result.final_digest,
        initial_payload_bytes=int(payload) if payload is not None else None,
        base_model=public_id,
        baseline=outcome.start.get("baseline"),
        resumed_after=result.resumed_after,
        privacy=result.privacy,
    )


def _private_run(
    opts: HostOptions,
    outcome: HostOutcome,
    study: StudyConfig,
    family: str,
    public_id: str,
    number: int,
    final: dict[str, float],
) -> PrivateRun:
    """The federated run as the host keeps it: every round's metrics, members, study, run id."""
    result = outcome.result
    return PrivateRun(
        study_name=opts.federation,
        trial_number=number,
        detail=RunDetail(
            kind="federated",
            state="complete",
            params=dict(outcome.params),
            curve=tuple(
                CurvePoint(round_number, name, value)
                for round_number, metrics in sorted(result.train_metrics.items())
                for name, value in sorted(metrics.items())
            ),
            metrics=dict(final),
            objective_metric=study.objective_metric,
            objective_direction=study.objective_direction,
            task=outcome.task,
            model=ModelRef(
                public_id=public_id,
                family=family,
                num_parameters=int(outcome.start.get("parameters", 0)),
                lora=opts.lora,
                head_only=study.trainable == "head",
            ),
            study_file=str(opts.study),
            pipeline=study.pipeline,
            members=tuple(result.members),
            privacy=(
                PrivacyGuarantee(
                    float(result.privacy["epsilon"]),
                    float(result.privacy["delta"]),
                    str(result.privacy["protected"]),
                    str(result.privacy["accountant"]),
                )
                if result.privacy
                else None
            ),
            extra={"run_id": str(outcome.run_id)},
            resumed_after_round=result.resumed_after,
        ),
    )
