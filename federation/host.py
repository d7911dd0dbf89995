"""`gridpoint fed host`: run a federation on a real Flower SuperLink, then publish its record.

Starts a SuperLink (TLS with a certificate issued by this node's key; SuperNode
authentication with exactly the trusted peers' keys), submits gridpoint's Flower App with
`flwr run`, reports each round as the ServerApp journals it, and when the run ends publishes
the federated run as a signed, anonymized RunRecord. Everything it started is stopped on
exit, Ctrl-C included. The SuperLink's control port accepts run submissions from whoever
reaches it: keep --listen on loopback or a protected interface.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

from gridpoint.errors import ConfigError, GridpointError, PeerError
from gridpoint.federation.app_forks import SERVERAPP, forked_apps
from gridpoint.federation.flower_certs import openssh_public_key, superlink_material
from gridpoint.federation.flower_nodes import FlowerNode, recorded, remember
from gridpoint.federation.model_state import spec_to_json
from gridpoint.federation.names import check_federation_name
from gridpoint.federation.processes import (
    Say,
    check_port_free,
    flower_env,
    free_port,
    kill_flower_processes_under,
    new_run_folder,
    start,
    stop,
    tool,
    wait_for_port,
)
from gridpoint.federation.server_app import STRATEGIES
from gridpoint.node.home import NodeHome
from gridpoint.node.protocol.identity import write_private_file
from gridpoint.node.protocol.tls import bind_error, split_address
from gridpoint.schema import TaskDescriptor

__all__ = ["FederationResult", "HostOptions", "HostOutcome", "resume_options", "run_host"]

APP_DIR = Path(__file__).parent / "flower_app"
#: The options a run was started with, in its folder (for --resume).
OPTIONS = "options.json"
CONNECTION = "gridpoint"


@dataclass(frozen=True)
class HostOptions:
    federation: str
    study: Path
    rounds: int
    min_members: int
    listen: str
    lora: bool
    strategy: str
    round_timeout: float
    params: dict[str, float]
    db: str | None
    #: Take the hyperparameters of the study's best trial on this node (and link its record).
    from_best_trial: bool = False
    #: Flower's SecAgg+: the host learns only the members' weighted sum (FedAvg only).
    secure_aggregation: bool = False
    #: DP-FedAvg (federation/privacy.py): member-level (epsilon, delta) over all rounds.
    dp: bool = False
    dp_epsilon: float = 8.0
    dp_delta: float = 1e-5
    #: The L2 norm each member's update is clipped to (with dp_adaptive_clip: the first
    #: round's; later rounds' follow the median of the members' update norms).
    dp_clip: float = 1.0
    dp_adaptive_clip: bool = False


@dataclass(frozen=True)
class FederationResult:
    """What the ServerApp wrote at the end of a run (result.json)."""

    members: list[str]
    train_metrics: dict[int, dict[str, float]]
    initial_digest: str
    final_digest: str
    #: The final global model, saved by the ServerApp as a from_pretrained folder.
    model_dir: Path
    #: The last round completed before a restart (`fed host --resume`); 0 if none.
    resumed_after: int = 0

    #: The released model's guarantee ({epsilon, delta, protected, accountant}); None: no DP.
    privacy: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], folder: Path) -> FederationResult:
        return cls(
            members=[str(m) for m in data["members"]],
            train_metrics={
                int(r): {k: float(v) for k, v in m.items()}
                for r, m in data["train_metrics"].items()
            },
            initial_digest=str(data["initial_digest"]),
            final_digest=str(data["final_digest"]),
            model_dir=folder / str(data["model_dir"]),
            resumed_after=int(data.get("resumed_after", 0)),
            privacy=data.get("privacy"),
        )


@dataclass(frozen=True)
class HostOutcome:
    """A finished federation as the host saw it."""

    run_id: int
    params: dict[str, float]
    task: TaskDescriptor
    result: FederationResult
    rounds: list[dict[str, Any]]
    start: dict[str, Any]
    #: Lineage: the records of the trials whose hyperparameters the federation used.
    parents: tuple[str, ...] = ()


def federation_params(study: Any, overrides: dict[str, float]) -> dict[str, float]:
    """One setting per hyperparameter: the override, else the middle of the searched range."""
    values: dict[str, float] = {k: float(v) for k, v in study.fixed_params().items()}
    for dim in study.search_space:
        if dim.kind == "categorical":
            values[dim.name] = float(dim.choices[0])
        elif dim.log:
            values[dim.name] = (dim.low * dim.high) ** 0.5
        else:
            values[dim.name] = (dim.low + dim.high) / 2
        if dim.kind == "int":
            values[dim.name] = float(round(values[dim.name]))
    unknown = set(overrides) - set(values) - {"lora_rank"}
    if unknown:
        raise ConfigError(f"--param {sorted(unknown)[0]}: not a hyperparameter of this study")
    return {**values, **overrides}


def best_trial_params(home: NodeHome, db: str | None, study: Any) -> tuple[dict[str, float], str]:
    """The best trial of `study` on this node: its hyperparameters and its record id.

    The record id is "" when the trial was kept private (it is then no lineage to publish).
    """
    import optuna

    from gridpoint.node.store.sql_store import normalize_db_url, open_store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        tuned = optuna.load_study(
            study_name=study.name, storage=normalize_db_url(home.studies_url(db))
        )
        best = tuned.best_trial
    except (KeyError, ValueError):
        raise ConfigError(
            f"--from-best-trial: study {study.name!r} has no complete trial on this node; "
            "run `gridpoint tune` on it first"
        ) from None
    params = {**federation_params(study, {}), **_numbers(best.params)}
    store = open_store(home.db_url(db))
    try:
        runs = store.list_private_runs(study.name)
    finally:
        store.close()
    record = next((r.record_id for r in runs if r.trial_number == best.number), None)
    return params, record or ""


def _numbers(params: dict[str, Any]) -> dict[str, float]:
    try:
        return {name: float(value) for name, value in params.items()}
    except (TypeError, ValueError):
        raise ConfigError(
            "--from-best-trial: the best trial has a non-numeric hyperparameter, "
            "which a federation cannot use"
        ) from None


def run_host(
    home: NodeHome,
    opts: HostOptions,
    say: Say,
    resume_from: Path | None = None,
    fork_serverapp: bool = True,
) -> HostOutcome:
    """Runs the federation to its end; returns the summary (raises GridpointError on failure).

    resume_from: the folder of a run that stopped (see resume_options); it goes on from its
    last checkpoint, on the same address, so that its members' SuperNodes reconnect.
    fork_serverapp: the run's ServerApp is forked from a process that imported it already
    (app_forks.py), not started cold by Flower.
    """
    from gridpoint.trainers.descriptor import describe
    from gridpoint.trainers.pipeline import load_data
    from gridpoint.trainers.study_config import load_study_config

    check_federation_name(opts.federation)
    if opts.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if opts.rounds < 1 or opts.min_members < 1:
        raise ConfigError("--rounds and --min-members must be at least 1")
    check_secure_aggregation(opts)
    check_dp_options(opts)  # before anything is loaded: a wrong option fails at once
    host, port = split_address(opts.listen, allow_port_zero=True)
    if port and resume_from is None:
        check_port_free(host, port)
    study = load_study_config(opts.study)
    if opts.lora and study.trainable == "head":
        raise ConfigError(
            f"--lora trains adapters but study {study.name!r} says [training] trainable = "
            "'head' (the head alone): leave out --lora or set trainable = 'all'"
        )
    params = federation_params(study, opts.params)
    parents: tuple[str, ...] = ()
    if opts.from_best_trial:
        best, record = best_trial_params(home, opts.db, study)
        params = {**best, **opts.params}
        parents = (record,) if record else ()
        say(
            f"hyperparameters from the best trial of study {study.name!r}"
            + (f" (record {record[:12]})" if record else "")
        )
    train, _ = load_data(study)  # the host's own data: only its coarse descriptor is used
    task = describe(study.task, study.language, train.texts, train.labels)
    from gridpoint.node.store.sql_store import open_store

    store = open_store(home.db_url(opts.db))
    try:
        peers = store.list_peers()
    finally:
        store.close()
    if len(peers) < opts.min_members:
        raise PeerError(
            f"--min-members {opts.min_members} but this node trusts only {len(peers)} peer(s)"
        )
    noise_multiplier = _plan_privacy(home, opts, charge=resume_from is None)
    if resume_from is None:
        port = port or free_port(host)
        folder = new_run_folder(home.path / "fed" / opts.federation)
        (folder / "flwr").mkdir(parents=True)
        # What --resume needs to start the same federation again, on the same address.
        saved = {**asdict(opts), "study": str(opts.study.resolve()), "listen": f"{host}:{port}"}
        (folder / OPTIONS).write_text(json.dumps(saved))
    else:
        folder = resume_from
        _restart_in(folder, host, port, say)
    material = superlink_material(home.tls, host, opts.federation)
    (folder / "ca.pem").write_bytes(home.tls.cert_pem)
    (folder / "superlink.pem").write_bytes(material.cert_pem)
    write_private_file(folder / "superlink.key", material.key_pem)
    (folder / "flwr" / "config.toml").write_text(
        tomli_w.dumps(
            {
                "superlink": {
                    "default": CONNECTION,
                    CONNECTION: {
                        "address": f"{host}:{port}",
                        "root-certificates": str(folder / "ca.pem"),
                    },
                }
            }
        )
    )
    env = flower_env(folder / "flwr")
    with forked_apps(SERVERAPP, env, folder, cold=not fork_serverapp) as env:
        superlink = start(_superlink_argv(folder, host, port), env, folder / "superlink.log")
        try:
            if not wait_for_port(host, port, 60, superlink):
                raise GridpointError(
                    f"the Flower SuperLink did not start; see {folder / 'superlink.log'}"
                )
            trust = _LiveTrust(folder, env, resume_from is not None, peers)
            trust.add(peers)
            if resume_from is not None:
                _stop_superseded_runs(lambda args: _flwr(args, env, folder))
            say(
                f"SuperLink on {host}:{port}; {len(peers)} trusted peer(s) may join "
                f"(`gridpoint fed join {host}:{port} --federation {opts.federation} --pipeline MODULE:FUNCTION`)"
            )
            run_id = _submit(home, opts, study, params, task, peers, folder, env, noise_multiplier)
            say(
                f"run {run_id} submitted: {opts.rounds} round(s), at least {opts.min_members} member(s)"
            )
            expected = [p.name or p.node_id[:12] for p in peers]
            result, rounds, start_event = _watch(
                folder,
                opts,
                superlink,
                say,
                expected,
                lambda: _online_members(folder, env),
                lambda: trust.follow(home, opts.db, say),
            )
        finally:
            stop(superlink)
    return HostOutcome(run_id, params, task, result, rounds, start_event, parents)


def _superlink_argv(folder: Path, host: str, port: int) -> list[str]:
    """The SuperLink's command: TLS and SuperNode authentication, its state in folder."""
    return [
        tool("flower-superlink"),
        "--ssl-ca-certfile",
        str(folder / "ca.pem"),
        "--ssl-certfile",
        str(folder / "superlink.pem"),
        "--ssl-keyfile",
        str(folder / "superlink.key"),
        "--enable-supernode-auth",
        "--database",
        str(folder / "state.db"),
        "--disable-runtime-dependency-installation",
        "--host",
        host,
        "--port",
        str(port),
    ]


def check_dp_options(opts: HostOptions) -> None:
    """ConfigError naming the bounds when --dp's settings are out of them."""
    if opts.dp and not (0 < opts.dp_epsilon <= 100 and 0 < opts.dp_delta < 1 and opts.dp_clip > 0):
        raise ConfigError(
            "--dp needs --dp-epsilon in (0, 100], --dp-delta in (0, 1) and --dp-clip > 0"
        )
    if opts.dp_adaptive_clip and not opts.dp:
        raise ConfigError("--dp-adaptive-clip adapts --dp's clipping: add --dp")
    if opts.dp_adaptive_clip and opts.secure_aggregation:
        raise ConfigError(
            "--dp-adaptive-clip needs each member's answer whether its update was within the "
            "clip, which SecAgg+ hides from the host: use a fixed --dp-clip with "
            "--secure-aggregation"
        )


def _plan_privacy(home: NodeHome, opts: HostOptions, charge: bool) -> float:
    """The noise multiplier for --dp (0.0 without), charged to this node's ledger first.

    The federation's whole (epsilon, delta) is recorded before the SuperLink starts (a
    resumed run was charged when it started); PrivacyBudgetExceeded, with the numbers,
    when it would take the federation past the node's privacy.budget_epsilon.
    """
    if not opts.dp:
        return 0.0
    check_dp_options(opts)
    from gridpoint.federation.privacy import ACCOUNTANT, PROTECTED, calibrate
    from gridpoint.node.pseudonyms import pseudonym
    from gridpoint.node.store.sql_privacy import PrivacyRelease
    from gridpoint.node.store.sql_store import open_store

    multiplier = calibrate(opts.dp_epsilon, opts.dp_delta, opts.rounds)
    if charge:
        store = open_store(home.db_url(opts.db))
        try:
            store.charge_privacy(
                PrivacyRelease(
                    pipeline=pseudonym(home.secret, "federation", opts.federation),
                    study=pseudonym(home.secret, "study", opts.federation),
                    epsilon=opts.dp_epsilon,
                    delta=opts.dp_delta,
                    protected=PROTECTED,
                    accountant=ACCOUNTANT,
                    kind="federation",
                ),
                home.config.privacy.budget_epsilon,
            )
        finally:
            store.close()
    return multiplier


def check_secure_aggregation(opts: HostOptions) -> None:
    """ConfigError, in one line, for a combination SecAgg+ cannot serve."""
    if not opts.secure_aggregation:
        return
    if opts.strategy != "fedavg":
        # SecAgg+ hands the host the members' average, which FedAdam/FedYogi would need
        # per member (their server optimizer steps on the average, but our verifying
        # strategy wraps Flower's per-reply aggregation): refuse rather than half-apply it.
        raise ConfigError(
            f"--secure-aggregation works with --strategy fedavg only, not {opts.strategy}"
        )
    if opts.min_members < 2:
        raise ConfigError(
            "--secure-aggregation needs --min-members 2 at least (one member's sum is its update)"
        )


def resume_options(home: NodeHome, federation: str) -> tuple[HostOptions, Path]:
    """The options and folder of the federation's last run, which must not have finished."""
    check_federation_name(federation)
    runs = sorted((home.path / "fed" / federation).glob("run-*"))
    if not runs or not (runs[-1] / OPTIONS).exists():
        raise ConfigError(f"--resume: this node has hosted no federation {federation!r}")
    folder = runs[-1]
    if (folder / "result.json").exists():
        raise ConfigError(
            f"--resume: the last run of federation {federation!r} ({folder.name}) has finished; "
            "start a new one without --resume"
        )
    data = json.loads((folder / OPTIONS).read_text())
    data["study"] = Path(data["study"])
    return HostOptions(**data), folder


def _restart_in(folder: Path, host: str, port: int, say: Say) -> None:
    """Clears what a stopped run left: Flower processes still running; rebuilds its progress."""
    from gridpoint.federation.checkpoint import CHECKPOINT

    # What the stopped run left running (its SuperExec and ServerApp are detached).
    kill_flower_processes_under(folder / "flwr")
    # Written again below, from the same keys (the members pinned the issuer, not this file).
    (folder / "superlink.key").unlink(missing_ok=True)
    shutil.rmtree(folder / "app", ignore_errors=True)
    deadline = time.monotonic() + 15
    while bind_error(host, port) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the killed SuperLink's port is released
    check_port_free(host, port)
    # The SuperLink's own state (state.db) is kept: it knows the members' SuperNodes, whose
    # heartbeats then mark them online again without a new registration.
    # The journal is rebuilt from the checkpoint: what the ServerApp did after it is redone.
    events = []
    if (folder / CHECKPOINT).exists():
        events = json.loads((folder / CHECKPOINT).read_text())["events"]
    progress = folder / "progress.jsonl"
    partial = folder / "progress.jsonl.partial"
    partial.write_text("".join(json.dumps(e) + "\n" for e in events))
    partial.replace(progress)
    done = max((int(e["round"]) for e in events), default=0)
    say(f"resuming federation run {folder.name} after round {done}")


#: The peers the ServerApp accepts updates from, {node id: ""}; it reads it every round.
TRUSTED = "trusted.json"


#: `flwr supernode register` commands run at once: each is a process of its own, about 1 s of
#: CPU (Flower's CLI starting up) and a short call to the SuperLink, so a federation of many
#: members is registered in a fraction of the time one at a time took.
REGISTER_AT_ONCE = 8


class _LiveTrust:
    """The run's trusted peers: registered with the SuperLink and listed for the ServerApp.

    A peer this node comes to trust while the federation runs is added (SuperNode key
    registered, then listed), so it may join and is accepted from the next round: trust is
    the node's own decision, read from its store, never from a member.
    """

    def __init__(self, folder: Path, env: dict[str, str], resumed: bool, peers: list[Any]) -> None:
        self.folder, self.env = folder, env
        path = folder / TRUSTED
        # A resumed run: whoever it listed is registered in its state.db already (a run
        # from before this list existed registered every peer it had).
        self.known: set[str] = set()
        if resumed:
            self.known = (
                set(json.loads(path.read_text())) if path.exists() else {p.node_id for p in peers}
            )
        self._next = 0.0

    def add(self, peers: list[Any]) -> list[Any]:
        """Registers the peers not registered yet, several at once; returns them. Those
        registered are listed even when another failed (its error is raised after)."""
        new = [p for p in peers if p.node_id not in self.known]
        failure: GridpointError | None = None
        with ThreadPoolExecutor(max_workers=max(1, min(REGISTER_AT_ONCE, len(new)))) as pool:
            registered = [pool.submit(self._register, peer) for peer in new]
            for peer, future in zip(new, registered, strict=True):
                try:
                    out = future.result()
                except GridpointError as exc:
                    failure = failure or exc
                    continue
                _remember_flower_node(self.folder, out, peer)
                self.known.add(peer.node_id)
        partial = self.folder / (TRUSTED + ".partial")
        partial.write_text(json.dumps(dict.fromkeys(sorted(self.known), "")))
        partial.replace(self.folder / TRUSTED)
        if failure is not None:
            raise failure
        return new

    def _register(self, peer: Any) -> str:
        """Registers peer's SuperNode key with the SuperLink; Flower's JSON answer."""
        key_path = self.folder / f"member-{peer.node_id}.pub"
        key_path.write_bytes(openssh_public_key(peer.cert_pem))
        return _flwr(
            [
                "supernode",
                "register",
                str(key_path),
                CONNECTION,
                "--name",
                f"gp-{peer.node_id[:16]}",
                "--format",
                "json",
            ],
            self.env,
            self.folder,
        )

    def follow(self, home: NodeHome, db: str | None, say: Say) -> None:
        """Every few seconds: adds the peers this node has come to trust since."""
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 5.0
        from gridpoint.node.store.sql_store import open_store

        store = open_store(home.db_url(db))
        try:
            peers = store.list_peers()
        finally:
            store.close()
        for peer in self.add(peers):
            say(f"now trusting {peer.name or peer.node_id[:12]}: it may join from the next round")


def _stop_superseded_runs(flwr: Callable[[list[str]], str]) -> None:
    """Stops the runs a resumed host's SuperLink still counts as unfinished.

    The SuperLink restarts from its state.db, where the run the host's crash interrupted is
    still running until its dead ServerApp's heartbeat lapses, about a minute later. A member
    that had received that run's next message meanwhile waits for the parts the ServerApp never
    finished sending, and takes no other message. Stopped, the old run is refused to it at its
    next try (within Flower's 10 s backoff) and it goes on to the resumed run. Best effort:
    where this fails, the member only waits as long as before. `flwr` runs the Flower CLI
    against this SuperLink.
    """
    try:
        out = flwr(["ls", CONNECTION, "--format", "json"])
        runs = _flwr_json(out)["runs"]
        unfinished = [
            str(int(r["run-id"])) for r in runs if not str(r["status"]).startswith("finished")
        ]
    except (GridpointError, ValueError, KeyError, TypeError):
        return
    for run_id in unfinished:
        # A run that finished in the meantime cannot be stopped, and needs not be.
        with contextlib.suppress(GridpointError):
            flwr(["stop", run_id, CONNECTION, "--format", "json"])


def _remember_flower_node(folder: Path, register_out: str, peer: Any) -> None:
    try:
        flower_id = int(_flwr_json(register_out)["node-id"])
    except (ValueError, KeyError, TypeError):
        # Only names suffer: the early-failure message, and failed members in the journal.
        return
    remember(folder, flower_id, FlowerNode(peer.name or peer.node_id[:12], peer.node_id))


def _online_members(folder: Path, env: dict[str, str]) -> list[str]:
    """The trusted peers whose SuperNodes the SuperLink sees online now (best effort)."""
    try:
        known = {str(k): v.name for k, v in recorded(folder).items()}
        listed = _flwr_json(
            _flwr(["supernode", "list", CONNECTION, "--format", "json"], env, folder)
        )
    except (OSError, ValueError, KeyError, GridpointError):
        return []
    return sorted(
        known.get(str(n.get("node-id")), f"flower node {n.get('node-id')}")
        for n in listed.get("nodes", [])
        if n.get("status") == "online"
    )


def _flwr_json(out: str) -> Any:
    """The JSON object flwr prints with `--format json`, after whatever it logs before it;
    ValueError where there is none."""
    return json.loads(out[out.index("{") :])


def _flwr(args: list[str], env: dict[str, str], folder: Path) -> str:
    done = subprocess.run(
        [tool("flwr"), *args], env=env, capture_output=True, text=True, cwd=folder, timeout=120
    )
    if done.returncode != 0:
        raise GridpointError(
            f"flwr {args[0]} {args[1] if len(args) > 1 else ''} failed: {done.stdout.strip()[-300:]} {done.stderr.strip()[-300:]}"
        )
    return done.stdout


def _submit(
    home: NodeHome,
    opts: HostOptions,
    study: Any,
    params: dict[str, float],
    task: Any,
    peers: list[Any],
    folder: Path,
    env: dict[str, str],
    noise_multiplier: float = 0.0,
) -> int:
    app = folder / "app"
    shutil.copytree(APP_DIR, app, ignore=shutil.ignore_patterns("__pycache__"))
    settings = run_config(opts, study, params, task, peers, folder, noise_multiplier)
    overrides = folder / "run-config.toml"
    overrides.write_text(tomli_w.dumps(settings))
    out = _flwr(
        ["run", str(app), CONNECTION, "--run-config", str(overrides), "--format", "json"],
        env,
        folder,
    )
    try:
        return int(_flwr_json(out)["run-id"])
    except (ValueError, KeyError) as exc:
        raise GridpointError(f"flwr run answered unexpectedly: {out.strip()[-300:]}") from exc


def run_config(
    opts: HostOptions,
    study: Any,
    params: dict[str, float],
    task: Any,
    peers: list[Any],
    folder: Path,
    noise_multiplier: float = 0.0,
) -> dict[str, Any]:
    """The run config `flwr run` submits; every key must be declared in the app's pyproject
    (Flower refuses a run with an undeclared one)."""
    lora_rank = int(params.get("lora_rank", 8))
    settings: dict[str, Any] = {
        "federation": opts.federation,
        "federation-dir": str(folder),
        "rounds": opts.rounds,
        "min-members": opts.min_members,
        "round-timeout": float(opts.round_timeout),
        "strategy": opts.strategy,
        "lora": opts.lora,
        "lora-rank": lora_rank,
        # Members train what a local trial of the study would: every weight, or the head.
        "trainable": study.trainable,
        "num-labels": task.num_labels,
        "seed": study.seed,
        "learning-rate": params["learning_rate"],
        "batch-size": int(params["batch_size"]),
        "local-epochs": int(params["epochs"]),
        "weight-decay": params["weight_decay"],
        "model-spec": spec_to_json(study.model),
        "members": json.dumps({p.node_id: "" for p in peers}),
        "secure-aggregation": opts.secure_aggregation,
        "dp-noise-multiplier": noise_multiplier,
        "dp-clip": opts.dp_clip if opts.dp else 0.0,
        "dp-adaptive": opts.dp and opts.dp_adaptive_clip,
        "dp-delta": opts.dp_delta,
    }
    if opts.dp and opts.secure_aggregation:
        # DP-FedAvg weighs members alike: SecAgg+ then scales each update by 1 of 1.
        settings["secagg-max-weight"] = 1.0
    return settings


#: Seconds a member's SuperNode may take to start and come online, beyond --round-timeout.
_MEMBER_START_S = 120


def _watch(
    folder: Path,
    opts: HostOptions,
    superlink: subprocess.Popen[bytes],
    say: Say,
    expected: list[str],
    online: Callable[[], list[str]] = list,
    follow_trust: Callable[[], None] = lambda: None,
) -> tuple[FederationResult, list[dict[str, Any]], dict[str, Any]]:
    progress, result = folder / "progress.jsonl", folder / "result.json"
    started = time.monotonic()
    deadline = started + opts.rounds * (opts.round_timeout + 120) + 300
    # Round 0 waits for --min-members; when too few ever come, that is said after the round
    # timeout (plus the time a member needs to start), not at the overall deadline.
    first_round_by = started + opts.round_timeout + _MEMBER_START_S
    seen = 0
    rounds: list[dict[str, Any]] = []
    start_event: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if progress.exists():
            lines = progress.read_text().splitlines()
            for line in lines[seen:]:
                event = json.loads(line)
                if event["event"] == "start":
                    start_event = {**start_event, **event}
                    if event.get("resumed_after"):
                        say(f"resumed after round {event['resumed_after']}")
                elif event["event"] == "members":
                    start_event["members_online"] = event["online"]
                elif event["event"] == "baseline":
                    start_event["baseline"] = event
                    say(f"round 0/{opts.rounds}: the starting model's {_evaluation(event)}")
                else:
                    rounds.append(event)
                    m = event["metrics"]
                    say(
                        f"round {event['round']}/{opts.rounds}: {len(event['accepted'])} member(s) aggregated"
                        + (f", {len(event['refused'])} refused" if event["refused"] else "")
                        + (f"; train loss {m['train_loss']:.4f}" if "train_loss" in m else "")
                        + f"; {_evaluation(event)}"
                        + (
                            f"; privacy spent epsilon {event['privacy']['epsilon']:.3g}"
                            if "privacy" in event
                            else ""
                        )
                        + _duration(event)
                    )
                    for refusal in event["refused"]:
                        say(f"  left out {refusal['node']}: {refusal['reason']}")
                    _warn_if_constant(event, say)
            seen = len(lines)
        if result.exists():
            outcome = FederationResult.from_json(json.loads(result.read_text()), folder)
            return outcome, rounds, start_event
        if superlink.poll() is not None:
            raise GridpointError(f"the SuperLink stopped; see {folder / 'superlink.log'}")
        follow_trust()
        # A resumed run writes no members event: its members were there before.
        waiting = not rounds and "members_online" not in start_event
        if waiting and not start_event.get("resumed_after") and time.monotonic() > first_round_by:
            came = online()
            raise GridpointError(
                f"fewer than --min-members {opts.min_members} member(s) joined within "
                f"--round-timeout {opts.round_timeout:g} s (+{_MEMBER_START_S} s to start); "
                f"came: {', '.join(came) or 'none'}; expected {opts.min_members} of: "
                f"{', '.join(expected)}; each joins with "
                f"`gridpoint fed join ... --federation {opts.federation}`"
            )
        time.sleep(0.5)
    raise GridpointError(
        f"the federation did not finish in time ({len(rounds)} of {opts.rounds} round(s) done); "
        f"expected members: {', '.join(expected)}"
    )


def _evaluation(event: dict[str, Any]) -> str:
    """The global model's evaluation on the members' own data, as one phrase."""
    m = event.get("eval_metrics") or {}
    if "accuracy" not in m:
        return "no member evaluated the global model"
    return (
        f"global eval loss {m['eval_loss']:.4f}, accuracy {m['accuracy']:.4f} "
        f"on {len(event.get('member_eval') or {})} member(s)' evaluation data"
    )


def _duration(event: dict[str, Any]) -> str:
    """A round's seconds, and its wait for members when it had to wait (older journals'
    events have no wait)."""
    if "seconds" not in event:
        return ""
    waited = event.get("waited_seconds", 0.0)
    return f" ({event['seconds']:.0f} s" + (
        f", after {waited:.0f} s waiting for members)" if waited >= 1 else ")"
    )


def _warn_if_constant(event: dict[str, Any], say: Say) -> None:
    """One line when the global model scores what always answering one label would."""
    m = event.get("eval_metrics") or {}
    if (
        "accuracy" in m
        and "constant_accuracy" in m
        and m["accuracy"] <= m["constant_accuracy"] + 0.005
    ):
        say(
            f"warning: round {event['round']}: global accuracy {m['accuracy']:.3f} is what "
            f"always predicting one label scores ({m['constant_accuracy']:.3f}): the model "
            "has learnt nothing yet (learning rate? epochs? rounds?)"
        )
