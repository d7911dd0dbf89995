"""A message of one repeated message field, encoded from parts already encoded: what a live
answer is (its envelopes, verbatim as stored).

Why: decoding each stored envelope into a message only to encode it again cost a live
answer about a tenth of its CPU (bench/RESULTS.md). In protobuf's encoding a repeated message
field is each element's bytes after its tag and length, in order; a message that has no
other field set is those and nothing else, which is what this writes. The parts are not
checked: one that is not an encoded message makes the whole message fail to decode where it
arrives. Must never be used for a message with another field set.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["encoded_repeated"]

# Protobuf's wire type of a length-delimited field.
_LENGTH_DELIMITED = 2


def encoded_repeated(message: Descriptor, field: str, parts: Iterable[bytes]) -> bytes:
    """The encoding of a `message` whose only field set is the repeated message `field`,
    holding the messages encoded as parts, in order."""
    described = message.fields_by_name[field]
    if described.type != FieldDescriptor.TYPE_MESSAGE or not described.is_repeated:
        raise ValueError(f"{message.full_name}.{field} is not a repeated message field")
    tag = described.number << 3 | _LENGTH_DELIMITED
    return b"".join([piece for part in parts for piece in (_header(tag, len(part)), part)])


# Remembered: the parts of one answer are about as long as one another (envelopes).
@functools.lru_cache(maxsize=4096)
def _header(tag: int, length: int) -> bytes:
    """A length-delimited field's tag and length."""
    return _varint(tag) + _varint(length)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
