"""Why a peer did not answer: down, or refusing this node's certificate.

gRPC reports both a peer that is down and a peer that closes the connection on our client
certificate (it does not trust us yet) as UNAVAILABLE. One plain TLS exchange tells them
apart: a node that accepts our certificate answers the HTTP/2 preface with its settings; one
that does not trust us closes the connection right after the handshake.

Must never send anything but the HTTP/2 preface, nor report a refusal it did not see.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from gridpoint.node.protocol.tls import split_address

__all__ = ["refuses_our_certificate"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def refuses_our_certificate(
    address: str, cert_path: Path, key_path: Path, timeout: float = 3.0
) -> bool:
    """True when the node at address completes TLS but closes on our client certificate."""
    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the peer's behaviour is observed here
    context.set_alpn_protocols(["h2"])
    context.load_cert_chain(cert_path, key_path)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock) as tls,
        ):
            tls.sendall(_PREFACE)
            return tls.recv(1) == b""
    except ssl.SSLError:
        return True  # an alert after the handshake: our certificate was refused
    except OSError:
        return False  # down or unreachable: nothing was refused
