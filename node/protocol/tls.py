"""TLS material for node-to-node gRPC: self-signed certificates, fingerprints, probing.

Each node holds one self-signed certificate whose subject common name is its node id.
Peers pin it by SHA-256 fingerprint (like SSH known_hosts) and use it as the only root
when they connect, so no certificate authority is involved. The certificate's host name
is derived from the node id; callers override the target name to it.

Never logs or returns the TLS private key.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridpoint.errors import FingerprintMismatch, PeerError, in_words

__all__ = [
    "TlsMaterial",
    "bind_error",
    "fingerprint",
    "make_tls_material",
    "node_id_of_certificate",
    "normalize_fingerprint",
    "private_key_pem",
    "probe_certificate",
    "split_address",
    "tls_hostname",
]

_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class TlsMaterial:
    """A PEM private key and its self-signed certificate."""

    key_pem: bytes
    cert_pem: bytes


def tls_hostname(node_id: str) -> str:
    """The DNS name a node's certificate is issued to (never resolved, only matched)."""
    return f"{node_id}.gridpoint.invalid"


def make_tls_material(node_id: str, name: str) -> TlsMaterial:
    """A fresh ECDSA P-256 key and a self-signed certificate for node_id.

    It is its own CA (it is the only root a peer trusts for this node) and serves both as
    server and as client certificate, since nodes authenticate each other mutually.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(tls_hostname(node_id))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return TlsMaterial(
        key_pem=private_key_pem(key), cert_pem=cert.public_bytes(serialization.Encoding.PEM)
    )


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """An unencrypted PKCS#8 PEM encoding of key (written only to 0600 files)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# Remembered: the daemon checks the certificate of every call against the pinned one, and
# a peer presents the same one call after call.
@functools.lru_cache(maxsize=256)
def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER bytes, as colon-separated lowercase hex."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """Accepts a fingerprint with or without colons, any case, optional 'sha256:' prefix."""
    raw = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise PeerError(
            "a fingerprint is 64 hex digits (colons optional), as printed by `gridpoint identity`"
        )
    return ":".join(raw[i : i + 2] for i in range(0, 64, 2))


def node_id_of_certificate(cert_pem: bytes) -> str:
    """The node id a certificate was issued to (its subject common name)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise PeerError("the peer's certificate names no node id")
    return str(names[0].value)


def split_address(address: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Splits 'host:port' (or '[v6]:port'); raises PeerError on anything else."""
    if "://" in address or "/" in address:
        raise PeerError(
            f"address {address!r} is not HOST:PORT (no scheme, no path: e.g. host:50551)"
        )
    host, sep, port = address.rpartition(":")
    lowest = 0 if allow_port_zero else 1
    if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
        raise PeerError(f"address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def bind_error(host: str, port: int) -> OSError | None:
    """Why a server could not bind host:port now, or None when it could.

    Binds a throwaway socket with SO_REUSEADDR, as gRPC and uvicorn bind theirs, so a port
    that only lingers in TIME_WAIT is not reported as taken.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def probe_certificate(address: str, expected_fingerprint: str, timeout: float = 5.0) -> bytes:
    """Fetches a node's TLS certificate and checks it against the expected fingerprint.

    The handshake verifies nothing by itself (the peer's certificate is self-signed); the
    fingerprint given out of band is what makes the result trustworthy. Returns the PEM.
    """
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=None) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise PeerError(f"cannot reach {address}: {in_words(exc)}") from exc
    if not der:
        raise PeerError(f"{address} presented no TLS certificate")
    pem = ssl.DER_cert_to_PEM_cert(der).encode()
    got = fingerprint(pem)
    if got != normalize_fingerprint(expected_fingerprint):
        raise FingerprintMismatch(
            f"{address} presented certificate {got}, not the fingerprint given; nothing was stored"
        )
    return pem
