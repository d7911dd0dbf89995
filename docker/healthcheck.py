"""The image's HEALTHCHECK: asks this container's node daemon the standard gRPC health question.

It reads what the daemon announced in its home (`daemon.lock`: the address it bound) and calls
`grpc.health.v1.Health/Check` over the daemon's own mutual TLS, presenting the node's own
certificate (a node always accepts it), on loopback. Exit 0 when the daemon answers SERVING,
1 otherwise, with one line saying why. Never prints key material or anything from the store.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 5.0


def loopback_target(address: str) -> str:
    """The bound address as this container reaches it: a wildcard host becomes loopback."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host in ("[::]", "::"):
        host = "[::1]"
    return f"{host}:{port}"


def tls_name(cert_pem: bytes) -> str:
    """The DNS name the node's certificate is issued to: what the client must expect."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return str(names.get_values_for_type(x509.DNSName)[0])


def check(home: Path) -> str | None:
    """None when the daemon of home answers SERVING, else why not."""
    try:
        announced = json.loads((home / "daemon.lock").read_text() or "{}")
        address = str(announced["address"])
    except (OSError, ValueError, KeyError):
        return "no daemon has announced an address in the node home yet"
    cert_pem = (home / "tls.crt").read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=cert_pem,
        private_key=(home / "tls.key").read_bytes(),
        certificate_chain=cert_pem,
    )
    options = [("grpc.ssl_target_name_override", tls_name(cert_pem))]
    with grpc.secure_channel(loopback_target(address), credentials, options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return f"the daemon at {address} did not answer: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"the daemon at {address} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def main() -> int:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    problem = check(Path(os.environ["GRIDPOINT_HOME"]))
    if problem is None:
        print("SERVING")
        return 0
    print(f"unhealthy: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
