"""A node's Ed25519 identity: key generation, storage, signing, and node ids.

The node id is derived from the public key, so anyone holding a key can check a claimed
id. This module never logs, prints or returns private key material; the key file is
written 0600.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gridpoint.errors import BadSignature, HomeError

__all__ = ["NodeIdentity", "node_id_of", "verify_signature", "write_private_file"]

_NODE_ID_TAG = b"gridpoint.v1/node-id"
PUBLIC_KEY_LEN = 32


def node_id_of(public_key: bytes) -> str:
    """The node id of a raw Ed25519 public key: 40 lowercase hex characters."""
    if len(public_key) != PUBLIC_KEY_LEN:
        raise BadSignature(f"public key must be {PUBLIC_KEY_LEN} bytes, got {len(public_key)}")
    return hashlib.sha256(_NODE_ID_TAG + public_key).hexdigest()[:40]


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Raises BadSignature unless signature is public_key's Ed25519 signature of message."""
    try:
        _public_key(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("signature does not match the signed bytes") from exc


# Remembered: a node verifies many signatures of few keys (every request of a peer, every
# record of an author).
@functools.lru_cache(maxsize=1024)
def _public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def write_private_file(path: Path, data: bytes) -> None:
    """Writes data to a new file readable by its owner only (fails if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class NodeIdentity:
    """A node's signing key with its derived public key and node id."""

    private_key: Ed25519PrivateKey
    public_key: bytes
    node_id: str

    @classmethod
    def generate(cls) -> NodeIdentity:
        """A fresh random identity."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_key(cls, key: Ed25519PrivateKey) -> NodeIdentity:
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private_key=key, public_key=public, node_id=node_id_of(public))

    @classmethod
    def load(cls, path: Path) -> NodeIdentity:
        """Reads a PKCS#8 PEM key written by save()."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise HomeError(f"no identity key at {path.name}: run `gridpoint init` first") from exc
        except ValueError as exc:
            raise HomeError(f"identity key {path.name} is not a valid PEM key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise HomeError(f"identity key {path.name} is not an Ed25519 key")
        return cls.from_private_key(key)

    def save(self, path: Path) -> None:
        """Writes the private key as PKCS#8 PEM, mode 0600; refuses to overwrite."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem)

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of message."""
        return self.private_key.sign(message)

    def __repr__(self) -> str:  # never show the key
        return f"NodeIdentity(node_id={self.node_id!r})"
