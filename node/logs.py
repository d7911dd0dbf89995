"""Structured logs: one JSON object per line on stderr.

Callers pass facts as `extra={"fields": {...}}`. Never log keys, the node secret, private
paths or private pipeline config; log node ids, record ids, counts and reasons.
"""

from __future__ import annotations

import json
import logging
import time

__all__ = ["configure_logging", "log_event"]

_logger = logging.getLogger("gridpoint")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
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
