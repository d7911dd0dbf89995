"""`gridpoint fed join`: take part in a trusted peer's federation with a Flower SuperNode.

The SuperLink at ADDRESS must present a certificate issued by one of this node's trusted
peers (the host); the SuperNode authenticates with this node's own key, which the host
registered from the certificate it pinned. The ClientApp trains on this node's private
pipeline only. Once its reply to the last round is sent, the command fetches the final
global model from the host's node (signed Artifacts service) and keeps it; it also returns
when the SuperLink goes away for --max-wait seconds, or on Ctrl-C, stopping the SuperNode
cleanly.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import tomli_w

from gridpoint.errors import GridpointError, PeerError
from gridpoint.federation.app_forks import CLIENTAPP, forked_apps
from gridpoint.federation.flower_certs import (
    issued_by,
    openssh_private_key,
    superlink_common_name,
)
from gridpoint.federation.global_model import federated_artifact_ids, receive_global_model
from gridpoint.federation.names import check_federation_name
from gridpoint.federation.processes import (
    flower_env,
    free_port,
    listening,
    new_run_folder,
    start,
    stop,
    tool,
)
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.identity import write_private_file
from gridpoint.node.protocol.tls import split_address

__all__ = ["run_member"]


def _superlink_certificate(address: str, max_wait: float) -> bytes:
    """The SuperLink's certificate, waiting up to max_wait seconds for a host to come up."""
    import socket
    import ssl

    host, port = split_address(address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + max_wait
    while True:
        try:
            with (
                socket.create_connection((host, port), timeout=10) as sock,
                context.wrap_socket(sock) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
            return ssl.DER_cert_to_PEM_cert(der or b"").encode()
        except OSError as exc:
            if time.monotonic() >= deadline:
                reason = (
                    "nothing listens there"
                    if isinstance(exc, ConnectionRefusedError)
                    else (exc.strerror or "no answer")
                )
                raise PeerError(
                    f"no SuperLink answered at {address} within --max-wait {max_wait:g} s "
                    f"({reason}); is `gridpoint fed host` running there?"
                ) from None
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _host_certificate(
    home: NodeHome, address: str, federation: str, db: str | None, max_wait: float
) -> tuple[bytes, str]:
    """The pinned certificate of the trusted peer that issued the SuperLink's certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from gridpoint.node.store.sql_store import open_store

    presented = _superlink_certificate(address, max_wait)
    names = x509.load_pem_x509_certificate(presented).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )
    hosted = str(names[0].value) if names else ""
    if hosted != superlink_common_name(federation):
        raise PeerError(
            f"the SuperLink at {address} hosts {hosted.removeprefix('superlink ')!r}, "
            f"not federation {federation!r}; nothing was started"
        )
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


#: Flower's error code when the SuperLink refuses to activate a SuperNode's key.
_NOT_ACTIVATED = "[code: 2004]"


def _start_supernode(
    argv: list[str], env: dict[str, str], log_path: Path, max_wait: float
) -> subprocess.Popen[bytes]:
    """Starts the SuperNode, again while the SuperLink refuses its key and max_wait allows.

    A host registers its members' keys only once its SuperLink is up, so a member that
    connects in between is refused once, then accepted.
    """
    deadline = time.monotonic() + max_wait
    while True:
        supernode = start(argv, env, log_path)
        while supernode.poll() is None and time.monotonic() < deadline:
            log = log_path.read_text(errors="replace") if log_path.exists() else ""
            if "Starting Flower SuperExec" in log or _NOT_ACTIVATED in log:
                break
            time.sleep(0.2)
        refused = _NOT_ACTIVATED in (
            log_path.read_text(errors="replace") if log_path.exists() else ""
        )
        if not refused or time.monotonic() >= deadline:
            return supernode
        stop(supernode)
        log_path.rename(log_path.with_suffix(".refused.log"))
        time.sleep(1.0)


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
    fork_clientapps: bool = True,
) -> dict[str, Any]:
    from gridpoint.trainers.pipeline import check_pipeline

    check_federation_name(federation)
    # A wrong --pipeline is said at once, not after the host has been reached and waited on.
    check_pipeline(pipeline, pipeline_dir)
    host_cert, host_id = _host_certificate(home, address, federation, db, max_wait)
    folder = new_run_folder(home.path / "fed-member" / federation)
    (folder / "flwr").mkdir(parents=True)
    (folder / "host.pem").write_bytes(host_cert)
    key_path = folder / "supernode.key"
    write_private_file(key_path, openssh_private_key(home.tls.key_pem))
    status = folder / "status.jsonl"
    node_config = folder / "node-config.toml"
    node_config.write_text(
        tomli_w.dumps(
            {
                "gridpoint-home": str(home.path),
                "pipeline": pipeline,
                "pipeline-dir": str(pipeline_dir.resolve()),
                "model-path": model_path,
                "status-file": str(status),
                "federation": federation,
            }
        )
    )
    argv = [
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
    ]
    log_path = folder / "supernode.log"
    env = flower_env(folder / "flwr")
    # Every message is answered by a ClientApp of its own: forked, unless asked cold.
    with forked_apps(CLIENTAPP, env, folder, cold=not fork_clientapps) as env:
        supernode = _start_supernode(argv, env, log_path, max_wait)
        say(
            f"joined federation {federation!r} hosted by {host_id}; training on this node's private data"
        )
        rounds: list[dict[str, Any]] = []
        #: The rounds whose global model this member evaluated (0: the starting model).
        evaluated: list[int] = []
        seen = 0
        # The host's federated models before this run ends, read once the host has accepted
        # this node (its first round): the run's own model is the one that appears after.
        known: set[str] | None = None
        unreachable = ""
        try:
            # Flower's SuperNode neither exits when a run ends nor when it gives up on a
            # vanished SuperLink. Leaving right after the last reply would make the host see
            # this node vanish before it collects that reply, so the member stays until the
            # host's SuperLink is gone (its log says so), with a safety limit after the last round.
            last_sent_at: float | None = None
            while supernode.poll() is None:
                seen = _report(status, seen, rounds, evaluated, say)
                if rounds and known is None and not unreachable:
                    try:
                        known = federated_artifact_ids(home, db, host_id)
                    except GridpointError as exc:
                        unreachable = str(exc)
                        say(f"the final model cannot be fetched from the host's node: {exc}")
                log = log_path.read_text(errors="replace") if log_path.exists() else ""
                if "Giving up reconnection" in log:
                    break
                # Done once the last round's global model was evaluated here (the host's last
                # message to this member) and every reply was handed to Flower.
                last_done = bool(evaluated) and evaluated[-1] >= rounds_total(rounds)
                # A reply to a run the host lost (it was restarted: --resume) fails to send.
                answered = log.count("Sent successfully") + log.count("Failed to send message")
                if last_done and answered >= seen:
                    last_sent_at = last_sent_at or time.monotonic()
                    # The host stops its SuperLink once it has every reply: then we are done.
                    if (
                        not listening(*split_address(address), timeout=2.0)
                        or time.monotonic() - last_sent_at > max_wait + 60
                    ):
                        break
                time.sleep(0.5)
            _report(status, seen, rounds, evaluated, say)
        finally:
            stop(supernode)
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if not rounds and _NOT_ACTIVATED in log:
        raise PeerError(
            f"the host {host_id} refused this node's SuperNode key: it does not trust this node "
            f"yet; on the host run: gridpoint peer add <this node's address> "
            f"--fingerprint {home.tls_fingerprint}"
        )
    if not rounds or rounds[-1]["round"] < rounds[-1]["rounds"]:
        raise PeerError(
            f"the federation ended before its last round reached this node; see {folder / 'supernode.log'}"
        )
    if known is None:
        raise PeerError(
            f"trained all {len(rounds)} round(s), but the final model could not be fetched from "
            f"the host's node ({unreachable or 'no round reached this node'}); fetch it later "
            f"with `gridpoint model pull ID --from {host_id[:12]}`"
        )
    model = receive_global_model(home, db, host_id, known, max_wait, federation)
    say(
        f"received the final global model {model.id[:12]} ({model.bytes} bytes); see `gridpoint model show`"
    )
    return {"federation": federation, "host": host_id, "rounds": rounds, "model": model.id}


def rounds_total(rounds: list[dict[str, Any]]) -> int:
    """The federation's number of rounds, as the host's messages said (unknown: never done)."""
    return int(rounds[-1]["rounds"]) if rounds else 10**9


def _report(
    status: Path, seen: int, rounds: list[dict[str, Any]], evaluated: list[int], say: Any
) -> int:
    if not status.exists():
        return seen
    lines = status.read_text().splitlines()
    for line in lines[seen:]:
        event = json.loads(line)
        if event.get("phase") == "evaluate":
            evaluated.append(int(event["round"]))
            say(
                f"round {event['round']}/{event['rounds']}: the global model scores accuracy "
                f"{event['accuracy']:.4f} on this node's evaluation data"
            )
            continue
        # A round trained again after the host resumed replaces the one the host lost.
        rounds[:] = [r for r in rounds if r["round"] != event["round"]]
        rounds.append(event)
        say(
            f"round {event['round']}/{event['rounds']}: local train loss {event['train_loss']:.4f}, "
            f"eval accuracy {event['accuracy']:.4f}"
        )
    return len(lines)
