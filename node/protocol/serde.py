"""Conversions between domain records and gridpoint.v1 wire messages, one pair per type.

Wire types stop here and at the servicers: the rest of node/ and all of trainers/ see only
the dataclasses of gridpoint/schema/records.py. encode_record() is the single place a RunRecord
is serialized for signing; it is deterministic, so equal content gives an equal id.
read_stored_envelope() reads back an envelope the store kept, so the store itself never
decodes wire bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from google.protobuf.message import DecodeError

from gridpoint.errors import RecordError
from gridpoint.node.protocol.envelope import content_id
from gridpoint.schema import (
    BaseModelInfo,
    CurvePoint,
    ParamValue,
    PrivacyGuarantee,
    RunRecord,
    SearchDimension,
    TaskDescriptor,
    choice_from_text,
    choice_text,
)
from gridpoint.v1 import envelope_pb2, records_pb2

__all__ = [
    "RUN_RECORD_TYPE",
    "EnvelopeContent",
    "decode_record",
    "encode_record",
    "read_stored_envelope",
    "record_from_proto",
    "record_to_proto",
]

RUN_RECORD_TYPE = records_pb2.RunRecord.DESCRIPTOR.full_name

_KIND_TO_PROTO = {"trial": records_pb2.RUN_KIND_TRIAL, "federated": records_pb2.RUN_KIND_FEDERATED}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}
_STATUS_TO_PROTO = {
    "complete": records_pb2.RUN_STATUS_COMPLETE,
    "pruned": records_pb2.RUN_STATUS_PRUNED,
    "failed": records_pb2.RUN_STATUS_FAILED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}


def param_to_proto(value: ParamValue) -> records_pb2.ParamValue:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return records_pb2.ParamValue(bool_value=value)
    if isinstance(value, int):
        return records_pb2.ParamValue(int_value=value)
    if isinstance(value, float):
        return records_pb2.ParamValue(double_value=value)
    return records_pb2.ParamValue(string_value=value)


def param_from_proto(value: records_pb2.ParamValue) -> ParamValue:
    which = value.WhichOneof("value")
    if which is None:
        raise RecordError("record field hyperparameters: a value is empty")
    result: ParamValue = getattr(value, which)
    return result


def record_to_proto(record: RunRecord) -> records_pb2.RunRecord:
    return records_pb2.RunRecord(
        schema_version=record.schema_version,
        kind=_KIND_TO_PROTO[record.kind],
        study=record.study,
        trial=record.trial,
        task=records_pb2.TaskDescriptor(**asdict(record.task)),
        model=records_pb2.BaseModel(**asdict(record.model)),
        search_space=[
            records_pb2.SearchDimension(
                **{**asdict(d), "choices": [choice_text(c) for c in d.choices]}
            )
            for d in record.search_space
        ],
        hyperparameters=[
            records_pb2.Hyperparameter(name=k, value=param_to_proto(v))
            for k, v in sorted(record.hyperparameters.items())
        ],
        curve=[
            records_pb2.CurvePoint(step=p.step, metric=p.metric, value=p.value)
            for p in record.curve
        ],
        metrics=[records_pb2.Metric(name=k, value=v) for k, v in sorted(record.metrics.items())],
        status=_STATUS_TO_PROTO[record.status],
        period=record.period,
        objective_metric=record.objective_metric,
        objective_direction=record.objective_direction,
        members=list(record.members),
        failure=record.failure,
        parents=list(record.parents),
        audience=list(record.audience),
        privacy=(
            records_pb2.Privacy(**asdict(record.privacy)) if record.privacy is not None else None
        ),
        resumed_after_round=record.resumed_after_round,
    )


def record_from_proto(msg: records_pb2.RunRecord) -> RunRecord:
    if msg.kind not in _KIND_FROM_PROTO:
        raise RecordError("record field kind: unknown run kind")
    # An unknown status is refused, never read as another: proto3 keeps unknown enum numbers.
    if msg.status not in _STATUS_FROM_PROTO:
        raise RecordError(f"record field status: unknown run status {msg.status}")
    # A name twice would silently keep one value of two: the record is not what was signed.
    for field_name, names in (
        ("hyperparameters", [h.name for h in msg.hyperparameters]),
        ("metrics", [m.name for m in msg.metrics]),
    ):
        if len(set(names)) != len(names):
            raise RecordError(f"record field {field_name}: a name appears twice")
    return RunRecord(
        schema_version=msg.schema_version,
        kind=_KIND_FROM_PROTO[msg.kind],
        study=msg.study,
        trial=msg.trial,
        task=TaskDescriptor(
            type=msg.task.type,
            num_labels=msg.task.num_labels,
            size_bucket=msg.task.size_bucket,
            balance_bucket=msg.task.balance_bucket,
            language=msg.task.language,
            text_length_bucket=msg.task.text_length_bucket,
            image_size_bucket=msg.task.image_size_bucket,
        ),
        model=BaseModelInfo(
            base=msg.model.base,
            family=msg.model.family,
            num_parameters=msg.model.num_parameters,
            method=msg.model.method,
        ),
        search_space=tuple(
            SearchDimension(
                name=d.name,
                kind=d.kind,
                low=d.low,
                high=d.high,
                log=d.log,
                step=d.step,
                choices=tuple(choice_from_text(c) for c in d.choices),
            )
            for d in msg.search_space
        ),
        hyperparameters={h.name: param_from_proto(h.value) for h in msg.hyperparameters},
        curve=tuple(CurvePoint(p.step, p.metric, p.value) for p in msg.curve),
        metrics={m.name: m.value for m in msg.metrics},
        status=_STATUS_FROM_PROTO[msg.status],
        period=msg.period,
        objective_metric=msg.objective_metric,
        objective_direction=msg.objective_direction,
        members=tuple(msg.members),
        failure=msg.failure,
        parents=tuple(msg.parents),
        audience=tuple(msg.audience),
        privacy=(
            PrivacyGuarantee(
                epsilon=msg.privacy.epsilon,
                delta=msg.privacy.delta,
                protected=msg.privacy.protected,
                accountant=msg.privacy.accountant,
            )
            if msg.HasField("privacy")
            else None
        ),
        resumed_after_round=msg.resumed_after_round,
    )


def encode_record(record: RunRecord) -> bytes:
    """The bytes that get signed: deterministic serialization of the record."""
    return record_to_proto(record).SerializeToString(deterministic=True)


def decode_record(payload: bytes) -> RunRecord:
    """Parses a signed payload; RecordError if it is not a RunRecord."""
    try:
        return record_from_proto(records_pb2.RunRecord.FromString(payload))
    except DecodeError as exc:
        raise RecordError("payload is not a valid gridpoint.v1.RunRecord") from exc


@dataclass(frozen=True)
class EnvelopeContent:
    """What a stored record envelope holds: the record's id, signer, signing time, record."""

    id: str
    signer_id: str
    signed_at_ms: int
    record: RunRecord


def read_stored_envelope(envelope: bytes) -> EnvelopeContent:
    """An envelope as the store keeps it, read back (verified when it was admitted: not again)."""
    env = envelope_pb2.SignedEnvelope.FromString(envelope)
    return EnvelopeContent(
        id=content_id(env.signer_id, env.payload),
        signer_id=env.signer_id,
        signed_at_ms=env.signed_at_unix_ms,
        record=decode_record(env.payload),
    )
