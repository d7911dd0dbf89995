"""The node config file (config.toml in the node home): its fields, defaults and checks.

`gridpoint init` writes it with every default spelled out and commented. Unknown keys and
wrong types are refused with a message naming the key, so a typo never silently falls back
to a default. It never holds secrets: keys and the node secret live in their own files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gridpoint.errors import ConfigError

#: The deepest introductions a node may follow (control/introductions.py's MAX_VOUCH_DEPTH).
_MAX_INTRODUCTION_DEPTH = 8
#: Each answering process takes one of the daemon's 8 gRPC workers while it answers; two
#: are left for model downloads and health checks (daemon/server.py WORKERS).
_MAX_ANSWER_PROCESSES = 6

__all__ = [
    "AnonymizerConfig",
    "IntroductionsConfig",
    "LedgerConfig",
    "NodeConfig",
    "PrivacyConfig",
    "RegistryConfig",
    "SecurityConfig",
    "StoreConfig",
    "SyncConfig",
    "render_default_config",
]


@dataclass(frozen=True)
class StoreConfig:
    """Where the catalog and private records are kept."""

    url: str = ""


@dataclass(frozen=True)
class SyncConfig:
    """How the daemon pulls from its trusted peers."""

    interval_s: float = 60.0
    timeout_s: float = 10.0
    page_size: int = 500
    idle_timeout_s: float = 30.0
    jitter: float = 0.2
    max_backoff_s: float = 900.0
    max_concurrent: int = 4


@dataclass(frozen=True)
class SecurityConfig:
    """Limits on what the node accepts."""

    request_window_s: float = 300.0
    max_message_bytes: int = 4 * 1024 * 1024
    #: Calls served or waiting for a worker at once; one more is refused at once as busy
    #: (RESOURCE_EXHAUSTED: the caller comes back later) instead of waiting in a queue.
    max_concurrent_calls: int = 32


@dataclass(frozen=True)
class AnonymizerConfig:
    """The allowlist: which parts of a run may leave this node (see node/publishing/anonymize.py)."""

    hyperparameters: bool = True
    search_space: bool = True
    curve: bool = True
    metrics: bool = True
    base_model: bool = True
    period: str = "month"
    curve_noise: float = 0.0


@dataclass(frozen=True)
class RegistryConfig:
    """The model registry's local rules (node/artifacts/registry.py); none leaves the node."""

    #: Aliases that `model alias set` moves, and `model alias remove` removes, only with --force.
    protected_aliases: tuple[str, ...] = ("champion", "production")
    #: A command run when an alias is set, moved or removed, the event as JSON on its stdin.
    on_promotion: str = ""
    hook_timeout_s: float = 30.0


@dataclass(frozen=True)
class LedgerConfig:
    """The outbound ledger (see node/control/ledger.py)."""

    detail_days: int = 30


@dataclass(frozen=True)
class IntroductionsConfig:
    """Whether sync takes in records of authors vouched for (see node/control/introductions.py)."""

    #: How many vouches deep an author may be (1 = vouched by a trusted peer); 0 = off.
    max_depth: int = 0


@dataclass(frozen=True)
class PrivacyConfig:
    """The node's default privacy mode for studies without a [privacy] table, and the
    budget of each private pipeline (see trainers/privacy/ and node/tuning/privacy.py)."""

    enabled: bool = False
    epsilon: float = 8.0
    delta: float = 1e-5
    protect: str = "both"
    accountant: str = "rdp"
    #: Most epsilon all private releases from one pipeline may spend together (0: no limit).
    budget_epsilon: float = 0.0

    def study_table(self) -> dict[str, object]:
        """The [privacy] table of a study that takes this default."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "protect": self.protect,
            "accountant": self.accountant,
        }


@dataclass(frozen=True)
class NodeConfig:
    """The whole config file."""

    name: str
    listen: str = "127.0.0.1:50551"
    #: Child processes answering peers' catalog calls beside the daemon (0: the daemon
    #: answers them itself); node/daemon/answer_processes.py says why.
    answer_processes: int = 0
    store: StoreConfig = field(default_factory=StoreConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    introductions: IntroductionsConfig = field(default_factory=IntroductionsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        """Reads and checks config.toml."""
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"no config at {path.name}: run `gridpoint init` first") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path.name} is not valid TOML: {exc}") from exc
        node = _section(data, "node", {"name", "listen", "answer_processes"})
        sections = {
            "store": StoreConfig,
            "sync": SyncConfig,
            "security": SecurityConfig,
            "anonymizer": AnonymizerConfig,
            "registry": RegistryConfig,
            "ledger": LedgerConfig,
            "introductions": IntroductionsConfig,
            "privacy": PrivacyConfig,
        }
        # [sharing] is the sharing policy, read and checked by node/control/policy.py.
        unknown = set(data) - {"node", "sharing", *sections}
        if unknown:
            raise ConfigError(f"{path.name}: unknown section [{sorted(unknown)[0]}]")
        if not isinstance(node.get("name"), str) or not node["name"]:
            raise ConfigError(f"{path.name}: [node] name must be a non-empty string")
        built = {
            key: _build(kind, _section(data, key, None), key) for key, kind in sections.items()
        }
        listen = node.get("listen", cls.listen)
        if not isinstance(listen, str):
            raise ConfigError(f"{path.name}: [node] listen must be a string HOST:PORT")
        answer_processes = node.get("answer_processes", cls.answer_processes)
        if (
            not isinstance(answer_processes, int)
            or isinstance(answer_processes, bool)
            or not 0 <= answer_processes <= _MAX_ANSWER_PROCESSES
        ):
            raise ConfigError(
                f"{path.name}: [node] answer_processes must be a whole number from 0 to "
                f"{_MAX_ANSWER_PROCESSES}"
            )
        config = cls(name=node["name"], listen=listen, answer_processes=answer_processes, **built)
        if config.anonymizer.period not in ("month", "quarter"):
            raise ConfigError(f"{path.name}: anonymizer.period must be 'month' or 'quarter'")
        if config.anonymizer.curve_noise < 0:
            raise ConfigError(f"{path.name}: anonymizer.curve_noise must not be negative")
        if not 0 < config.registry.hook_timeout_s <= 3600:
            raise ConfigError(f"{path.name}: registry.hook_timeout_s must be in (0, 3600] seconds")
        if not config.sync.idle_timeout_s > 0:
            raise ConfigError(f"{path.name}: sync.idle_timeout_s must be more than 0")
        if not 0 <= config.introductions.max_depth <= _MAX_INTRODUCTION_DEPTH:
            raise ConfigError(
                f"{path.name}: introductions.max_depth must be 0 (off) to {_MAX_INTRODUCTION_DEPTH}"
            )
        if not 0 <= config.sync.jitter < 1:
            raise ConfigError(f"{path.name}: sync.jitter must be at least 0 and less than 1")
        if not config.sync.max_backoff_s > 0 or config.sync.max_concurrent < 1:
            raise ConfigError(
                f"{path.name}: sync.max_backoff_s must be more than 0, sync.max_concurrent at "
                "least 1"
            )
        privacy = config.privacy
        if privacy.budget_epsilon < 0 or not 0 < privacy.epsilon <= 100:
            raise ConfigError(
                f"{path.name}: privacy.epsilon must be in (0, 100], privacy.budget_epsilon >= 0"
            )
        if privacy.protect not in ("training", "evaluation", "both") or privacy.accountant not in (
            "rdp",
            "pld",
        ):
            raise ConfigError(
                f"{path.name}: privacy.protect must be training, evaluation or both; "
                "privacy.accountant rdp or pld"
            )
        if not 0 < privacy.delta < 0.01:
            raise ConfigError(f"{path.name}: privacy.delta must be in (0, 0.01)")
        if config.ledger.detail_days < 1:
            raise ConfigError(f"{path.name}: ledger.detail_days must be at least 1")
        if config.security.max_concurrent_calls < 1:
            raise ConfigError(f"{path.name}: security.max_concurrent_calls must be at least 1")
        if config.sync.page_size < 1 or config.security.max_message_bytes < 1024:
            raise ConfigError(
                f"{path.name}: sync.page_size and security.max_message_bytes too small"
            )
        return config


def _section(data: dict[str, Any], key: str, allowed: set[str] | None) -> dict[str, Any]:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise ConfigError(f"config: [{key}] must be a table")
    if allowed is not None and set(section) - allowed:
        raise ConfigError(f"config: unknown key {key}.{sorted(set(section) - allowed)[0]}")
    return section


def _build(kind: type[Any], values: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in fields(kind)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"config: unknown key {section}.{key}")
        default = known[key].default
        expected = float if isinstance(default, float) else type(default)
        if expected is tuple and isinstance(value, list):  # TOML arrays: lists of strings here
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"config: {section}.{key} must be a list of strings")
            value = tuple(value)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != isinstance(default, bool):
            raise ConfigError(
                f"config: {section}.{key} must be {expected.__name__}, got {type(value).__name__}"
            )
        values = {**values, key: value}
    return kind(**values)


def render_default_config(name: str) -> str:
    """The config.toml `gridpoint init` writes: every default, each one explained."""
    d = NodeConfig(name=name)
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f"""\
# gridpoint node configuration, written by `gridpoint init`. Edit freely.
# Secrets are not here: identity.key, tls.key and node.secret are separate 0600 files.

[node]
# Organization name, shown to peers in Hello.
name = "{escaped}"
# Address `gridpoint node start` listens on (port 0 = pick a free port and print it).
# Keep it on a protected interface: peers must still present a trusted certificate.
listen = "{d.listen}"
# Processes that answer peers' catalog calls (live queries, sync pages) beside the daemon
# (0 to 6; 0 = the daemon answers them itself). One per core: on 2 cores, 2 answer about
# 1.8x the live queries a second (bench/RESULTS.md), each for about 90 MB of memory.
answer_processes = {d.answer_processes}

[store]
# Database URL. Empty = SQLite file catalog.db in this home (WAL mode).
# For PostgreSQL: "postgresql://user@host:5432/dbname" (or pass --db on the command line).
url = "{d.store.url}"

[sync]
# Seconds between pulls from every trusted peer while the daemon runs (0 = never).
interval_s = {d.sync.interval_s}
# Seconds to wait for a peer's answer before giving up on it for this round.
timeout_s = {d.sync.timeout_s}
# Records asked for per sync page.
page_size = {d.sync.page_size}
# Seconds a model download waits for the peer's next chunk before giving the peer up.
idle_timeout_s = {d.sync.idle_timeout_s}
# Each round with a peer is due interval_s later times a random factor in 1 +/- jitter.
jitter = {d.sync.jitter}
# A peer that fails is tried again at doubling intervals, at most this many seconds apart.
max_backoff_s = {d.sync.max_backoff_s}
# Most peers synced at the same time.
max_concurrent = {d.sync.max_concurrent}

[security]
# Accepted age (and clock skew) of a signed live request, in seconds; older ones are refused.
request_window_s = {d.security.request_window_s}
# Largest gRPC message this node sends or accepts, in bytes.
max_message_bytes = {d.security.max_message_bytes}
# Peers' calls served or waiting at once; one more is answered "busy" (RESOURCE_EXHAUSTED)
# at once, and its peer asks again later, rather than waiting behind the others.
max_concurrent_calls = {d.security.max_concurrent_calls}

[anonymizer]
# What a tuning run may publish. Never published, whatever is set here: data rows, texts,
# label names, file paths, column names, host/user names, environment, exception text.
# Study and trial names always leave only as keyed pseudonyms (HMAC with node.secret).
hyperparameters = {_toml_bool(d.anonymizer.hyperparameters)}
search_space = {_toml_bool(d.anonymizer.search_space)}
curve = {_toml_bool(d.anonymizer.curve)}
metrics = {_toml_bool(d.anonymizer.metrics)}
# Public hub id of the base model (a local checkpoint path is never published).
base_model = {_toml_bool(d.anonymizer.base_model)}
# Run times are coarsened to a "month" or a "quarter".
period = "{d.anonymizer.period}"
# Standard deviation of Gaussian noise added to published curve values (0 = none).
curve_noise = {d.anonymizer.curve_noise}

[registry]
# Named models, versions and aliases stay on this node (`gridpoint model register|alias`).
# Moving or removing one of these aliases needs --force.
protected_aliases = [{", ".join(f'"{a}"' for a in d.registry.protected_aliases)}]
# A command run when an alias is set, moved or removed (e.g. "/usr/local/bin/deploy --stage"),
# split like a shell line but run without a shell; the event is JSON on its stdin. Its failure
# is logged and never undoes the change. Empty = none.
on_promotion = "{d.registry.on_promotion}"
# Seconds the command may run before it is stopped.
hook_timeout_s = {d.registry.hook_timeout_s}

[ledger]
# Days each thing sent to a peer is kept in detail in the outbound ledger (`gridpoint audit`);
# older entries are counted per peer and day.
detail_days = {d.ledger.detail_days}

[introductions]
# Take in relayed records of authors this node does not trust itself, when a trusted peer
# vouches for them (`gridpoint trust vouch`): 1 = vouched by a trusted peer, 2 = or by an
# author vouched so, ... up to 8. 0 = off: only trusted authors' records are stored. Never
# used for live queries (`catalog query --peers`) nor federation membership.
max_depth = {d.introductions.max_depth}

[privacy]
# Differential privacy for what studies publish (a study's own [privacy] table wins).
# enabled = true: every study without one runs DP-SGD and/or releases noisy evaluation
# values, with this budget for one row of the protected data.
enabled = {_toml_bool(d.privacy.enabled)}
epsilon = {d.privacy.epsilon}
delta = {d.privacy.delta}
# What is protected: "training" (DP-SGD), "evaluation" (released values) or "both".
protect = "{d.privacy.protect}"
# How the study is accounted (Google's dp-accounting): "rdp" or "pld".
accountant = "{d.privacy.accountant}"
# Most epsilon all private studies of one pipeline may spend (`gridpoint privacy ledger`);
# a study that would pass it is refused before it starts. 0 = no limit.
budget_epsilon = {d.privacy.budget_epsilon}

# Sharing policy: without a [sharing] section every trusted peer receives every record.
# `gridpoint policy check` validates it; a running node follows edits without a restart.
# [sharing]
# default = "all"                      # records no rule matches: "all" or "none"
# [sharing.groups]
# consortium = ["<node id>"]
# [[sharing.rules]]                    # the first rule a record matches decides
# name = "consortium-only"
# studies = ["my-study"]               # this node's study names, and/or
# filter = "task.type = 'causal-lm'"   # a catalog filter
# groups = ["consortium"]              # or "all"
# parts = ["curves", "search_space", "base_model", "lineage"]   # optional parts sent
"""


def _toml_bool(value: bool) -> str:
    return "true" if value else "false"
