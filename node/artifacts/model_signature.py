"""An exported model's OpenSSF model-signing signature, and the statement binding its key.

model-signing (PyPI `model-signing`, the OpenSSF format: a Sigstore bundle over an in-toto
statement of every file's SHA-256) signs with EC keys (P-256/384/521), not Ed25519, so each
node has a model-signing key of its own, HOME/model-signing.key (EC P-256, PKCS#8, 0600,
made on first use), and binds it to its identity with a DSSE envelope (the format
in-toto and model-signing use) that its Ed25519 identity key signs: node id, identity key,
SHA-256 of the model-signing public key. An exported folder holds, beside the model:

    model.sig                 the model-signing bundle (every other file but the two below)
    signing-key.pub           the model-signing public key (PEM)
    signing-key.binding.json  the DSSE binding statement, signed by the node identity

so `model_signing verify key DIR --signature DIR/model.sig --public_key DIR/signing-key.pub`
checks the files with no gridpoint installed, and verify_folder() checks both the bundle and
the binding. Must never write the private key anywhere but the home, nor put a group, a
registry name or a home path into any file it writes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gridpoint.errors import BadSignature, HomeError, SignatureInvalid, in_words
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.identity import node_id_of, write_private_file

__all__ = [
    "BINDING_FILE",
    "BINDING_TYPE",
    "PUBLIC_KEY_FILE",
    "SIGNATURE_FILE",
    "VerifiedFolder",
    "sign_folder",
    "verify_folder",
]

SIGNATURE_FILE = "model.sig"
PUBLIC_KEY_FILE = "signing-key.pub"
BINDING_FILE = "signing-key.binding.json"
#: The DSSE payload type of the binding statement.
BINDING_TYPE = "application/vnd.gridpoint.model-signing-key.v1+json"
_KEY_FILE = "model-signing.key"
#: Largest binding or key file read back (they are a few hundred bytes).
_MAX_SIDE_FILE = 64 * 1024
_SIDE_FILES = (SIGNATURE_FILE, PUBLIC_KEY_FILE, BINDING_FILE)


@dataclass(frozen=True)
class VerifiedFolder:
    """An exported folder that matched its signature: who signed it, and how many files."""

    signer: str
    files: int


def sign_folder(home: NodeHome, folder: Path) -> None:
    """Writes the key, binding and model-signing bundle over every file of folder."""
    from model_signing import hashing, signing

    for name in _SIDE_FILES:
        if (folder / name).exists():
            raise SignatureInvalid(
                f"the model holds a file named {name}, which its signature would replace"
            )
    key_path = _signing_key(home)
    public_pem = _public_pem(key_path)
    (folder / PUBLIC_KEY_FILE).write_bytes(public_pem)
    (folder / BINDING_FILE).write_text(json.dumps(_binding(home, public_pem), indent=2) + "\n")
    try:
        signing.Config().use_elliptic_key_signer(private_key=key_path).set_hashing_config(
            hashing.Config().set_ignored_paths(paths=list(_SIDE_FILES))
        ).sign(folder, folder / SIGNATURE_FILE)
    except OSError as exc:
        raise SignatureInvalid(f"cannot sign the exported model: {in_words(exc)}") from exc


def verify_folder(folder: Path) -> VerifiedFolder:
    """Checks the binding (identity signature, key digest) and the model-signing bundle
    (every file's digest, nothing added or missing); SignatureInvalid says what failed."""
    from model_signing import hashing, verifying

    if not folder.is_dir():
        raise SignatureInvalid(f"{folder} is not a folder")
    for name in _SIDE_FILES:
        if not (folder / name).is_file():
            raise SignatureInvalid(
                f"{folder} holds no {name}: it was not exported with `gridpoint model export`"
            )
    public_pem = _read_small(folder / PUBLIC_KEY_FILE)
    signer = _check_binding(_read_small(folder / BINDING_FILE), public_pem)
    try:
        verifying.Config().use_elliptic_key_verifier(
            public_key=folder / PUBLIC_KEY_FILE
        ).set_hashing_config(hashing.Config().set_ignored_paths(paths=list(_SIDE_FILES))).verify(
            folder, folder / SIGNATURE_FILE
        )
    except Exception as exc:  # model-signing raises ValueError and parser errors alike
        raise SignatureInvalid(
            f"{folder.name} does not match its signature: {_mismatch(exc)}"
        ) from None
    files = sum(1 for p in folder.rglob("*") if p.is_file()) - len(_SIDE_FILES)
    return VerifiedFolder(signer=signer, files=files)


def _signing_key(home: NodeHome) -> Path:
    """The node's model-signing key file, made (EC P-256) on first use."""
    path = home.path / _KEY_FILE
    if not path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            write_private_file(path, pem)
        except FileExistsError:
            pass  # another export made it first: use that one
        except OSError as exc:
            raise HomeError(f"cannot write the model-signing key: {in_words(exc)}") from exc
    return path


def _public_pem(key_path: Path) -> bytes:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        raise HomeError(f"{_KEY_FILE} in the node home is not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise HomeError(f"{_KEY_FILE} in the node home is not an EC key")
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _binding(home: NodeHome, public_pem: bytes) -> dict[str, Any]:
    """The DSSE envelope of the binding statement, signed by the node's identity key."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner, SSlibKey

    identity = home.identity
    statement = {
        "node_id": identity.node_id,
        "identity_key": {"ed25519": base64.b64encode(identity.public_key).decode()},
        "model_signing_key": {"sha256": hashlib.sha256(public_pem).hexdigest()},
    }
    envelope = Envelope(json.dumps(statement, sort_keys=True).encode(), BINDING_TYPE, {})
    public = SSlibKey.from_crypto(identity.private_key.public_key())
    envelope.sign(CryptoSigner(identity.private_key, public))
    out: dict[str, Any] = envelope.to_dict()
    return out


def _check_binding(binding: bytes, public_pem: bytes) -> str:
    """The node id the binding names, once its identity signature and key digest match."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    try:
        envelope = Envelope.from_dict(json.loads(binding))
        statement = json.loads(envelope.payload)
        identity_key = base64.b64decode(statement["identity_key"]["ed25519"], validate=True)
        node_id = str(statement["node_id"])
        key_digest = str(statement["model_signing_key"]["sha256"])
        public = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(identity_key))
    except (ValueError, KeyError, TypeError):
        raise SignatureInvalid(f"{BINDING_FILE} is not a gridpoint key binding") from None
    if envelope.payload_type != BINDING_TYPE:
        raise SignatureInvalid(f"{BINDING_FILE} is not a gridpoint key binding")
    try:
        envelope.verify([public], 1)
    except Exception:  # securesystemslib's VerificationError, or a malformed signature
        raise SignatureInvalid(
            f"{BINDING_FILE}: the identity signature does not verify (altered or forged)"
        ) from None
    try:
        if node_id_of(identity_key) != node_id:
            raise SignatureInvalid(f"{BINDING_FILE}: the node id does not belong to its key")
    except BadSignature:
        raise SignatureInvalid(f"{BINDING_FILE}: the identity key is not an Ed25519 key") from None
    if hashlib.sha256(public_pem).hexdigest() != key_digest:
        raise SignatureInvalid(
            f"{PUBLIC_KEY_FILE} is not the model-signing key node {node_id[:12]} bound"
        )
    return node_id


def _read_small(path: Path) -> bytes:
    if path.stat().st_size > _MAX_SIDE_FILE:
        raise SignatureInvalid(f"{path.name} is larger than a signature file can be")
    return path.read_bytes()


# model-signing lists its findings as a Python list's repr: quotes may come escaped.
_VERDICTS = (
    (re.compile(r"Hash mismatch for \\*'([^'\\]+)\\*'"), "changed"),
    (re.compile(r"Extra files found in model \\*'[^']*\\*': ([^\"'\]\\]+)"), "added"),
    (re.compile(r"Missing files in model \\*'[^']*\\*': ([^\"'\]\\]+)"), "missing"),
)


def _mismatch(exc: BaseException) -> str:
    """model-signing's verdict in a few words: which files changed, appeared or went."""
    from cryptography.exceptions import InvalidSignature

    if isinstance(exc, InvalidSignature):
        return f"the bundle's signature does not verify with {PUBLIC_KEY_FILE}"
    text = str(exc)
    parts = [
        f"{words} {', '.join(m.strip() for m in pattern.findall(text))}"
        for pattern, words in _VERDICTS
        if pattern.search(text)
    ]
    if parts:
        return "; ".join(parts)[:300]
    return (text.splitlines() or [type(exc).__name__])[0][:200]
