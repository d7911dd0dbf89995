"""The schema: gridpoint's record types, one type per concept, shared by every layer.

The code is organized as follows:

- vocabulary.py: the fixed vocabularies (kinds, statuses, buckets) and the functions that
  compute each bucket from private data; the public hub-id rule.
- records.py: RunRecord and its parts (TaskDescriptor, BaseModelInfo, SearchDimension,
  CurvePoint, PrivacyGuarantee).
- validation.py: validate_record() and the limits every record keeps.
- record_json.py: the JSON form that `gridpoint publish` reads (load_record_json() bounds its
  size and nesting before parsing).

Depends on nothing but the standard library and gridpoint.errors: no protobuf, no database,
no torch. Wire types stop at gridpoint.node.protocol.serde; trainers fill these types.
"""

from gridpoint.schema.record_json import load_record_json, record_from_json, record_to_json
from gridpoint.schema.records import (
    SCHEMA_VERSION,
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
from gridpoint.schema.validation import validate_record

__all__ = [
    "SCHEMA_VERSION",
    "BaseModelInfo",
    "CurvePoint",
    "ParamValue",
    "PrivacyGuarantee",
    "RunRecord",
    "SearchDimension",
    "TaskDescriptor",
    "choice_from_text",
    "choice_text",
    "load_record_json",
    "record_from_json",
    "record_to_json",
    "validate_record",
]
