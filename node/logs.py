"""Structured logs: one JSON object per line on stderr, each value cut short, floods held back.

Callers pass facts as `extra={"fields": {...}}`. Never log keys, the node secret, private
paths or private pipeline config; log node ids, record ids, counts and reasons. Peers control
much of what gets logged (records they send, errors they answer), so no value is written at
more than MAX_LOG_VALUE_CHARS, and events a peer can repeat at will go through log_limited(),
which writes at most LOG_BURST lines per key and LOG_WINDOW_S and counts the rest.
"""

from __future__ import annotations

import json
import logging
import threading
import time

__all__ = [
    "LOG_BURST",
    "LOG_WINDOW_S",
    "MAX_LOG_VALUE_CHARS",
    "configure_logging",
    "log_event",
    "log_limited",
]

_logger = logging.getLogger("gridpoint")

#: Longest text of one logged value; longer ones are cut and their length noted.
MAX_LOG_VALUE_CHARS = 200
#: Lines one rate-limited key may write per window; the rest are counted, then reported.
LOG_BURST = 20
LOG_WINDOW_S = 60.0
# Keys are peers and methods, so few; a bound keeps a stream of new ones from growing it.
_MAX_KEYS = 1024


def _cut(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= MAX_LOG_VALUE_CHARS:
        return value
    return f"{text[:MAX_LOG_VALUE_CHARS]}... ({len(text)} chars)"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": _cut(record.getMessage()),
            **{key: _cut(value) for key, value in fields.items()},
        }
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Sends gridpoint's logs to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False


def log_event(event: str, level: int = logging.INFO, **fields: object) -> None:
    """Logs one event with its fields."""
    _logger.log(level, event, extra={"fields": fields})


class _RateLimit:
    """Per key: a window's start, lines written in it, and lines held back since the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, int, int]] = {}

    def admit(self, key: str) -> int | None:
        """None to hold this line back; else how many were held back before it."""
        now = time.monotonic()
        with self._lock:
            start, written, held = self._keys.get(key, (now, 0, 0))
            if now - start >= LOG_WINDOW_S:
                start, written = now, 0
            if written >= LOG_BURST:
                self._keys[key] = (start, written, held + 1)
                return None
            if key not in self._keys and len(self._keys) >= _MAX_KEYS:
                self._keys.pop(next(iter(self._keys)))
            self._keys[key] = (start, written + 1, 0)
            return held


_limit = _RateLimit()


def log_limited(key: str, event: str, level: int = logging.INFO, **fields: object) -> None:
    """Logs like log_event, unless key already wrote LOG_BURST lines in this window; the
    next line written for key says how many were held back ("suppressed")."""
    held = _limit.admit(key)
    if held is None:
        return
    if held:
        fields = {**fields, "suppressed": held}
    log_event(event, level, **fields)
