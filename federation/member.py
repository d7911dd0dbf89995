"""`gridpoint fed join`: take part in a trusted peer's federation with a Flower SuperNode.

The SuperLink at ADDRESS must present a certificate issued by one of this node's trusted
peers (the host); the SuperNode authenticates with this node's own key, which the host
registered from the certificate it pinned. The ClientApp trains on this node's private
pipeline only. The command returns once its reply to the last round is sent, when the
SuperLink goes away for --max-wait seconds, or on Ctrl-C, stopping the SuperNode cleanly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import tomli_w

from gridpoint.errors import PeerError
from gridpoint.federation.flower_certs import issued_by, openssh_private_key
from gridpoint.federation.processes import flower_env, free_port, start, stop, tool
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.identity import write_private_file
from gridpoint.node.protocol.tls import split_address

__all__ = ["run_member"]


def _host_certificate(home: NodeHome, address: str, db: str | None) -> tuple[bytes, str]:
    """The pinned certificate of the trusted peer that issued the SuperLink's certificate."""
    import socket
    import ssl

    from gridpoint.node.store.sql_store import open_store

    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=10) as sock,
            context.wrap_socket(sock) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise PeerError(
            f"cannot reach a SuperLink at {address}: {exc.__class__.__name__}"
        ) from None
    presented = ssl.DER_cert_to_PEM_cert(der or b"").encode()
    store = open_store(home.db_url(db))
    try:
        peers = store.list_peers()
    finally:
        store.close()
    for peer in peers:
        if issued_by(presented, peer.cert_pem):
            return peer.cert_pem, peer.node_id
    raise PeerError(
        f"the SuperLink at {address} is not run by a trusted peer of this node; nothing was started"
    )


def run_member(
    home: NodeHome,
    address: str,
    federation: str,
    pipeline: str,
    pipeline_dir: Path,
    model_path: str,
    db: str | None,
    say: Any,
    max_wait: float,
) -> dict[str, Any]:
    module, sep, func = pipeline.partition(":")
    if not sep or not module or not func:
        raise PeerError("--pipeline must be MODULE:FUNCTION")
    host_cert, host_id = _host_certificate(home, address, db)
    folder = home.path / "fed-member" / federation
    (folder / "flwr").mkdir(parents=True, exist_ok=True)
    (folder / "host.pem").write_bytes(host_cert)
    key_path = folder / "supernode.key"
    key_path.unlink(missing_ok=True)
    write_private_file(key_path, openssh_private_key(home.tls.key_pem))
    status = folder / "status.jsonl"
    status.unlink(missing_ok=True)
    node_config = folder / "node-config.toml"
    node_config.write_text(
        tomli_w.dumps(
            {
                "gridpoint-home": str(home.path),
                "pipeline": pipeline,
                "pipeline-dir": str(pipeline_dir.resolve()),
                "model-path": model_path,
                "status-file": str(status),
            }
        )
    )
    supernode = start(
        [
            tool("flower-supernode"),
            "--root-certificates",
            str(folder / "host.pem"),
            "--superlink",
            address,
            "--auth-supernode-private-key",
            str(key_path),
            "--node-config",
            str(node_config),
            "--port",
            str(free_port()),
            "--max-wait-time",
            str(max_wait),
        ],
        flower_env(folder / "flwr"),
        folder / "supernode.log",
    )
    say(
        f"joined federation {federation!r} hosted by {host_id}; training on this node's private data"
    )
    rounds: list[dict[str, Any]] = []
    seen = 0
    log_path = folder / "supernode.log"
    try:
        # Flower's SuperNode neither exits when a run ends nor when it gives up on a
        # vanished SuperLink. Leaving right after the last reply would make the host see
        # this node vanish before it collects that reply, so the member stays until the
        # host's SuperLink is gone (its log says so), with a safety limit after the last round.
        last_sent_at: float | None = None
        while supernode.poll() is None:
            seen = _report(status, seen, rounds, say)
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            if "Giving up reconnection" in log:
                break
            last_done = bool(rounds) and rounds[-1]["round"] >= rounds[-1]["rounds"]
            if last_done and log.count("Sent successfully") >= len(rounds):
                last_sent_at = last_sent_at or time.monotonic()
                if time.monotonic() - last_sent_at > max_wait + 60:
                    break
            time.sleep(0.5)
        _report(status, seen, rounds, say)
    finally:
        stop(supernode)
    if not rounds or rounds[-1]["round"] < rounds[-1]["rounds"]:
        raise PeerError(
            f"the federation ended before its last round reached this node; see {folder / 'supernode.log'}"
        )
    return {"federation": federation, "host": host_id, "rounds": rounds}


def _report(status: Path, seen: int, rounds: list[dict[str, Any]], say: Any) -> int:
    if not status.exists():
        return seen
    lines = status.read_text().splitlines()
    for line in lines[seen:]:
        event = json.loads(line)
        rounds.append(event)
        say(
            f"round {event['round']}/{event['rounds']}: local train loss {event['train_loss']:.4f}, "
            f"eval accuracy {event['accuracy']:.4f}"
        )
    return len(lines)
