"""Flower security material derived from gridpoint identities, so no new trust is needed.

- The SuperLink's TLS certificate is issued by the host node's own TLS key (its node
  certificate is a CA), so a member verifies it with the host certificate it already pinned.
- SuperNode authentication keys are the nodes' TLS keys (EC P-256), in OpenSSH format: the
  host registers exactly its trusted peers' keys, read from their pinned certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gridpoint.node.protocol.tls import TlsMaterial, private_key_pem

__all__ = [
    "issued_by",
    "openssh_private_key",
    "openssh_public_key",
    "superlink_common_name",
    "superlink_material",
]


def superlink_common_name(federation: str) -> str:
    """The SuperLink certificate's common name: it names the federation it hosts."""
    return f"superlink {federation}"[:64]


def superlink_material(node_tls: TlsMaterial, host: str, federation: str) -> TlsMaterial:
    """A server certificate for the SuperLink at host, issued by the node's TLS key."""
    issuer_cert = x509.load_pem_x509_certificate(node_tls.cert_pem)
    issuer_key = serialization.load_pem_private_key(node_tls.key_pem, password=None)
    if not isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        raise TypeError("a node's TLS key is an EC key (see gridpoint.node.protocol.tls)")
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, superlink_common_name(federation))])
        )
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return TlsMaterial(
        key_pem=private_key_pem(key), cert_pem=cert.public_bytes(serialization.Encoding.PEM)
    )


def openssh_public_key(cert_pem: bytes) -> bytes:
    """The certificate's (EC) public key in OpenSSH format, for `flwr supernode register`."""
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def openssh_private_key(key_pem: bytes) -> bytes:
    """A PEM private key re-encoded in OpenSSH format, for --auth-supernode-private-key."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def issued_by(cert_pem: bytes, issuer_pem: bytes) -> bool:
    """True when cert_pem carries a valid signature by issuer_pem's key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(issuer_pem))
    except (ValueError, TypeError, Exception):
        return False
    return True
