"""The sharing policy: the [sharing] section of config.toml, checked, and kept current.

    [sharing]
    default = "all"                # records no rule matches: "all" trusted peers, or "none"

    [sharing.groups]
    consortium = ["<node id>", "<node id>"]

    [[sharing.rules]]              # the first rule a record matches decides
    name = "llm-consortium"
    studies = ["llm-sft"]          # this node's study names (optional)
    filter = "task.type = 'causal-lm'"   # a catalog filter (optional)
    groups = ["consortium"]        # group names, or "all" (every trusted peer)
    parts = ["curves"]             # optional parts sent (default: all of PARTS)

Without a [sharing] section every trusted peer receives everything, as before. A mistake is
a PolicyError naming the line of config.toml it is on. PolicySource re-reads the file when it
changes, so a running daemon follows an edit without a restart; an edit with a mistake is
logged once and the policy in force stays.

Must never let a rule name a group that does not exist, nor accept a filter that does not
parse: a policy either loads whole or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridpoint.errors import FilterError, PolicyError
from gridpoint.node.logs import log_event
from gridpoint.node.pseudonyms import pseudonym
from gridpoint.node.store.query_filter import And, Comparison, FilterNode, parse_filter
from gridpoint.schema.validation import is_node_id

__all__ = [
    "ALL",
    "PARTS",
    "PolicySnapshot",
    "PolicySource",
    "SharingPolicy",
    "SharingRule",
    "load_policy",
    "parse_policy",
]

#: The group every trusted peer is in.
ALL = "all"
#: The optional parts of a record a rule may leave out.
PARTS = ("curves", "search_space", "base_model", "lineage")
_GROUP_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_RULE_KEYS = {"name", "studies", "filter", "groups", "parts"}
#: Most rules and groups of one policy (each rule is a term of every served page's query).
MAX_RULES = 100
MAX_GROUPS = 100


@dataclass(frozen=True)
class SharingRule:
    """One rule: which records (condition), to whom (groups), with which optional parts."""

    name: str
    groups: tuple[str, ...]
    parts: frozenset[str] = frozenset(PARTS)
    condition: FilterNode | None = None
    text: str = ""
    line: int = 0

    @property
    def open_to_all(self) -> bool:
        return ALL in self.groups

    @property
    def whole(self) -> bool:
        return self.parts == frozenset(PARTS)


@dataclass(frozen=True)
class SharingPolicy:
    """Groups of node ids and ordered rules; default says what records no rule matches get."""

    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)
    rules: tuple[SharingRule, ...] = ()
    default: str = ALL

    @property
    def default_rule(self) -> SharingRule:
        return SharingRule("default", (ALL,) if self.default == ALL else ())

    @property
    def conditions(self) -> list[FilterNode | None]:
        """Each rule's condition, in order (None: the rule matches every record)."""
        return [r.condition for r in self.rules]

    def rule_at(self, index: int) -> SharingRule:
        """The rule at index, or the default rule for -1."""
        return self.rules[index] if index >= 0 else self.default_rule

    def members(self, rule: SharingRule) -> frozenset[str]:
        """The node ids a rule's groups name (without "all")."""
        return frozenset().union(*(self.groups.get(g, frozenset()) for g in rule.groups))

    def admits(self, rule: SharingRule, peer_ids: frozenset[str]) -> bool:
        """Whether a peer (any id of its key chain) is in one of the rule's groups."""
        return rule.open_to_all or not self.members(rule).isdisjoint(peer_ids)

    def groups_of(self, peer_ids: frozenset[str]) -> list[str]:
        return sorted(g for g, ids in self.groups.items() if not ids.isdisjoint(peer_ids))

    def digest(self, peer_ids: frozenset[str]) -> str:
        """What this policy gives one peer, in 8 hex digits ("" for the policy of no policy):
        when it changes, the peer is offered every record again under the new share."""
        if not self.rules and self.default == ALL:
            return ""
        h = hashlib.sha256()
        for rule in (*self.rules, self.default_rule):
            h.update(
                repr(
                    (rule.name, rule.text, self.admits(rule, peer_ids), sorted(rule.parts))
                ).encode()
            )
        return h.hexdigest()[:8]


class _Lines:
    """Where things are in config.toml, for error messages (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.entries: list[tuple[int, str, int, str]] = []  # (line, table, rule index, text)
        table, rule = "", -1
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if line.startswith("[["):
                table = line.strip("[] ")
                rule += table == "sharing.rules"
            elif line.startswith("["):
                table = line.strip("[] ")
            self.entries.append((number, table, rule, line))

    def find(self, table: str, key: str | None = None, rule: int = -1) -> int:
        header = 0
        for number, t, r, line in self.entries:
            if t != table or (table == "sharing.rules" and r != rule):
                continue
            if line.startswith("["):
                header = number
            elif key is not None and re.match(rf"{re.escape(key)}\s*=", line):
                return number
        return header or self._section()

    def _section(self) -> int:
        return next((n for n, t, _, _ in self.entries if t.startswith("sharing")), 1)


def _fail(where: str, line: int, problem: str) -> PolicyError:
    return PolicyError(f"{where} line {line}: {problem}")


def parse_policy(text: str, secret: bytes, where: str = "config.toml") -> SharingPolicy:
    """The policy of a config file's text; PolicyError naming the line of a mistake."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{where} is not valid TOML: {exc}") from None
    section = data.get("sharing")
    if section is None:
        return SharingPolicy()
    lines = _Lines(text)
    if not isinstance(section, dict):
        raise _fail(where, lines.find("sharing"), "[sharing] must be a table")
    for key in section:
        if key not in ("default", "groups", "rules"):
            raise _fail(where, lines.find("sharing", key), f"unknown key sharing.{key}")
    default = section.get("default", ALL)
    if default not in (ALL, "none"):
        raise _fail(where, lines.find("sharing", "default"), 'sharing.default is "all" or "none"')
    groups = _groups(section.get("groups", {}), lines, where)
    raw_rules = section.get("rules", [])
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_RULES:
        raise _fail(
            where,
            lines.find("sharing", "rules"),
            f"sharing.rules is a list of 0-{MAX_RULES} tables",
        )
    rules = tuple(_rule(i, r, groups, secret, lines, where) for i, r in enumerate(raw_rules))
    names = [r.name for r in rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise _fail(where, rules[i].line, f"two rules are named {name!r}")
    return SharingPolicy(groups, rules, default)


def _groups(raw: Any, lines: _Lines, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict) or len(raw) > MAX_GROUPS:
        raise _fail(
            where, lines.find("sharing.groups"), f"[sharing.groups] is a table of 0-{MAX_GROUPS}"
        )
    out: dict[str, frozenset[str]] = {}
    for name, members in raw.items():
        line = lines.find("sharing.groups", name)
        if name == ALL or not _GROUP_NAME.fullmatch(name):
            raise _fail(
                where, line, f"group name {name[:64]!r}: letters, digits, '_' or '-', not 'all'"
            )
        if not isinstance(members, list) or not all(
            isinstance(m, str) and is_node_id(m) for m in members
        ):
            raise _fail(
                where, line, f"group {name!r} is a list of node ids (40 hex digits, lowercase)"
            )
        out[name] = frozenset(members)
    return out


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _rule(
    index: int,
    raw: Any,
    groups: Mapping[str, frozenset[str]],
    secret: bytes,
    lines: _Lines,
    where: str,
) -> SharingRule:
    header = lines.find("sharing.rules", None, index)
    if not isinstance(raw, dict):
        raise _fail(where, header, "a rule is a table ([[sharing.rules]])")

    def line(key: str) -> int:
        return lines.find("sharing.rules", key, index)

    for key in raw:
        if key not in _RULE_KEYS:
            raise _fail(where, line(key), f"unknown key {key!r} in a rule")
    name = raw.get("name", f"rule {index + 1}")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise _fail(where, line("name"), "a rule's name is text of 1-64 characters")
    named = _strings(raw.get("groups"))
    if not named:
        raise _fail(where, line("groups") or header, f"rule {name!r} needs groups = [...]")
    for group in named:
        if group != ALL and group not in groups:
            known = ", ".join([ALL, *sorted(groups)])
            raise _fail(
                where,
                line("groups"),
                f"rule {name!r} names unknown group {group!r} (known: {known})",
            )
    parts = _strings(raw.get("parts", list(PARTS)))
    if parts is None or set(parts) - set(PARTS):
        raise _fail(where, line("parts"), f"rule {name!r}: parts are among {', '.join(PARTS)}")
    terms: list[FilterNode] = []
    studies = raw.get("studies")
    if studies is not None:
        listed = _strings(studies)
        if not listed:
            raise _fail(where, line("studies"), f"rule {name!r}: studies is a list of study names")
        terms.append(
            Comparison("study", "IN", tuple(pseudonym(secret, "study", s) for s in listed))
        )
    text = raw.get("filter", "")
    if not isinstance(text, str):
        raise _fail(where, line("filter"), f"rule {name!r}: filter is a text")
    if text:
        try:
            parsed = parse_filter(text)
        except FilterError as exc:
            raise _fail(
                where, line("filter"), f"rule {name!r}: the filter does not parse: {exc}"
            ) from None
        if parsed is not None:
            terms.append(parsed)
    condition = None if not terms else terms[0] if len(terms) == 1 else And(tuple(terms))
    described = " and ".join(
        [*([f"studies {', '.join(studies)}"] if studies else []), *([text] if text else [])]
    )
    return SharingRule(
        name, tuple(named), frozenset(parts), condition, described or "every record", header
    )


def load_policy(path: Path, secret: bytes) -> SharingPolicy:
    """The policy of a config file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read {path.name}: {exc.strerror}") from None
    return parse_policy(text, secret, path.name)


@dataclass(frozen=True)
class PolicySnapshot:
    """A policy in force and the stamp (mtime, size) of the config file it was read at."""

    stamp: tuple[int, int] | None
    policy: SharingPolicy


class PolicySource:
    """The policy in force: re-read when config.toml changes, kept when an edit is wrong.
    Started from another source's snapshot (another process's), it goes on as that one
    would: the same policy until the file changes from the stamp it was read at."""

    def __init__(self, path: Path, secret: bytes, start: PolicySnapshot | None = None) -> None:
        self._path = path
        self._secret = secret
        self._lock = threading.Lock()
        if start is None:
            start = PolicySnapshot(self._stat(), load_policy(path, secret))
        self._stamp, self._policy = start.stamp, start.policy

    def snapshot(self) -> PolicySnapshot:
        with self._lock:
            return PolicySnapshot(self._stamp, self._policy)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> SharingPolicy:
        stamp = self._stat()
        if stamp == self._stamp:
            return self._policy
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._policy = load_policy(self._path, self._secret)
                    log_event("sharing policy reloaded", rules=len(self._policy.rules))
                except PolicyError as exc:
                    log_event("sharing policy not reloaded", logging.WARNING, error=str(exc))
            return self._policy
