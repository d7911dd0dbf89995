"""The publishing service: the one way a run of this node becomes a signed record in its catalog.

Every source hands it a typed private run (`PrivateRun`, node/store/base.py): `tune`'s trials
(node/tuning/study_run.py), the Trainer callback, the Optuna publisher and the importers
(gridpoint/integrations/sink.py), `fed host` (federation/publish.py). It anonymizes the run
(node/publishing/anonymize.py), checks every metric value against its range, signs the record
(catalog.sign_record) and stores the record and the private run in one transaction; asked, it
keeps the run's model (node/artifacts/keep.py). A record written by hand (`gridpoint publish`)
comes through here too: the study and trial names in it become keyed pseudonyms before it is
signed, exactly the ones `tune` gives.

Must never: sign a record the anonymizer did not make (a written record: before its names are
pseudonyms), store a run's record without its private run or the other way round, publish a
failed run whose failure says nothing about the hyperparameters, or sign a metric value outside
its range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gridpoint.errors import RecordError
from gridpoint.node.artifacts.keep import keep_trial_model
from gridpoint.node.artifacts.store import Artifact, ArtifactStore, NewArtifact
from gridpoint.node.catalog import publish, sign_record
from gridpoint.node.home import NodeHome
from gridpoint.node.pseudonyms import own_name
from gridpoint.node.publishing.anonymize import anonymize, check_metric_ranges
from gridpoint.node.store.base import CatalogStore, PrivateRun
from gridpoint.schema import RunRecord, record_from_json

__all__ = ["Published", "PublishingService"]


@dataclass(frozen=True)
class Published:
    """What became of one run: its record's id (None when the run stays private), whether
    the record was new to the catalog, and the record itself."""

    record_id: str | None
    new: bool
    record: RunRecord | None = None


class PublishingService:
    """Anonymize, sign, store both parts at once, keep the model: for one node home."""

    def __init__(
        self, home: NodeHome, store: CatalogStore, artifacts: ArtifactStore | None = None
    ) -> None:
        self._home = home
        self._store = store
        self._artifacts = artifacts

    def record_of(self, run: PrivateRun, *, parents: tuple[str, ...] = ()) -> RunRecord | None:
        """The record run would be published as (None: it stays private); stores nothing.

        A failed run is published only with a public failure reason: an error that says
        nothing about the hyperparameters (a bug, a missing file) would only mislead peers.
        """
        if run.detail.state == "failed" and not run.detail.failure:
            return None
        record = anonymize(
            run, secret=self._home.secret, policy=self._home.config.anonymizer, parents=parents
        )
        return check_metric_ranges(record)

    def publish(self, run: PrivateRun, *, parents: tuple[str, ...] = ()) -> Published:
        """Publishes run's record (if it has one) and keeps run privately, in one transaction."""
        record = self.record_of(run, parents=parents)
        signed = sign_record(self._home.identity, record) if record is not None else None
        record_id = signed.id if signed is not None else None
        result = self._store.add_run(dataclasses.replace(run, record_id=record_id), signed)
        return Published(record_id, result.new == 1, record)

    def keep_private(self, run: PrivateRun) -> None:
        """Keeps run privately, publishing nothing of it (a private study's trial that was
        not its best, under publish = "best")."""
        self._store.add_run(run, None)

    def publish_written(self, data: object) -> Published:
        """Publishes a record written by hand (parsed JSON, the form `gridpoint publish` reads).

        Its `study` and `trial` are the owner's own names: they become the pseudonyms `tune`
        would give them (a value already a pseudonym stays), so no plain word reaches a peer.
        """
        names = {}
        if isinstance(data, dict):
            data = dict(data)
            for key in ("study", "trial"):
                value = data.pop(key, "")
                if not isinstance(value, str):
                    raise RecordError(f"record field {key}: must be a string")
                names[key] = value
        record = record_from_json(data)
        if record.privacy is not None:
            raise RecordError(
                "record field privacy: a written record cannot state a privacy guarantee "
                "(only a private study's own accounting does)"
            )
        study, trial = names.get("study", ""), names.get("trial", "")
        secret = self._home.secret
        record = dataclasses.replace(
            record,
            study=own_name(secret, "study", study) if study else "",
            trial=own_name(secret, "trial", trial, study) if trial else "",
        )
        result = publish(self._store, self._home.identity, check_metric_ranges(record))
        return Published(result.id, result.new, record)

    def keep_model(
        self, save: Callable[[Path], None], info: NewArtifact, *, keep: int, direction: str
    ) -> Artifact | None:
        """Keeps a complete run's model when it ranks among its group's best keep (see
        artifacts/keep.py); save writes the model folder."""
        if self._artifacts is None:
            self._artifacts = ArtifactStore(self._home, self._store)
        return keep_trial_model(self._artifacts, save, info, keep=keep, direction=direction)
