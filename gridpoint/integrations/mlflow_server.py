"""An MLflow tracking server read over its REST API (2.0), with every cost bounded.

Three calls, as MLflow documents them: `experiments/get-by-name`, `runs/search` (paged) and
`metrics/get-history` (paged). Bounded: each request by a socket timeout and its body by
size; the pages of one listing and the runs listed by count (a server that always answers
"there is more" stops at the cap, and that is said); the whole import by a deadline. While it
lists, it says how far it got. Credentials come from the URI's user part or MLflow's own
environment variables (MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD).

Must never: put the tracking URI's password or a raw response byte on the terminal (a
server's text has its control characters removed and is cut short), or send anything but
reads.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from gridpoint.errors import ConfigError, in_words
from gridpoint.integrations.mlflow_runs import ListedRun, MlflowRun, Progress, ReadLimits
from gridpoint.node.store.engine import redact_url

__all__ = ["MAX_BODY_BYTES", "TrackingServer", "printable"]

#: The largest response body read; a larger one is refused.
MAX_BODY_BYTES = 64 * 1024 * 1024
_PAGE = 1_000
#: The part of an error answer read for its message.
_MAX_ERROR_BYTES = 64 * 1024
_SHOWN_CHARS = 200


def printable(text: str, limit: int = _SHOWN_CHARS) -> str:
    """text a server sent, safe for a terminal: control and format characters gone, one line,
    at most limit characters."""
    kept = (ch if not unicodedata.category(ch).startswith("C") else " " for ch in text)
    line = " ".join("".join(kept).split())
    return line if len(line) <= limit else f"{line[:limit]}..."


def _auth(parts: Any) -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = parts.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = parts.password or os.environ.get("MLFLOW_TRACKING_PASSWORD") or ""
    if user:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("a number the server sent as something else")
    return int(value)


class TrackingServer:
    """One tracking server, its deadline started at creation."""

    def __init__(self, uri: str, limits: ReadLimits, progress: Progress) -> None:
        parts = urlsplit(uri)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._shown = redact_url(uri)
        self._headers = {"Content-Type": "application/json", **_auth(parts)}
        self._limits = limits
        self._progress = progress
        self._deadline = time.monotonic() + limits.timeout_s

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any
    ) -> Any:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise ConfigError(
                f"the MLflow server at {self._shown} took longer than {self._limits.timeout_s:g} s "
                "(--timeout): nothing was imported past that point"
            )
        url = f"{self._base}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=self._headers, method=method)
        timeout = min(self._limits.request_timeout_s, left)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = self._body(response)
        except urllib.error.HTTPError as exc:
            raise ConfigError(self._refused(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            why = in_words(reason) if isinstance(reason, BaseException) else printable(str(reason))
            if isinstance(reason, socket.timeout | TimeoutError):
                why = f"no answer within {timeout:.3g} s"
            raise ConfigError(f"cannot read the MLflow server at {self._shown}: {why}") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise ConfigError(
                f"the MLflow server at {self._shown} answered something that is not JSON"
            ) from None

    def _body(self, response: Any) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(1 << 16):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ConfigError(
                    f"the MLflow server at {self._shown} sent an answer larger than "
                    f"{MAX_BODY_BYTES // 2**20} MiB"
                )
            if time.monotonic() > self._deadline:
                raise ConfigError(
                    f"the MLflow server at {self._shown} took longer than "
                    f"{self._limits.timeout_s:g} s (--timeout)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _refused(self, exc: urllib.error.HTTPError) -> str:
        try:
            text = exc.read(_MAX_ERROR_BYTES).decode("utf-8", errors="replace")
        except OSError:
            text = ""
        try:
            message = json.loads(text).get("message", text)
        except (ValueError, AttributeError, RecursionError):
            message = text
        detail = printable(str(message)) or printable(str(exc.reason))
        return f"the MLflow server at {self._shown} answered HTTP {exc.code}: {detail}"

    def list_runs(
        self, experiment: str, wanted: Callable[[str], bool]
    ) -> tuple[list[ListedRun], list[str]]:
        """The experiment's active runs, oldest first, within the caps; notes on what was cut."""
        self._progress(f"asking {self._shown} for experiment {experiment!r}")
        try:
            found = self._call("GET", "experiments/get-by-name", experiment_name=experiment)
        except ConfigError as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "HTTP 404" in str(exc):
                raise ConfigError(
                    f"no MLflow experiment named {experiment!r} at that tracking URI"
                ) from None
            raise
        experiment_id = str((found.get("experiment") or {}).get("experiment_id", ""))
        if not experiment_id:
            raise ConfigError(f"no MLflow experiment named {experiment!r} at that tracking URI")
        listed: list[ListedRun] = []
        notes: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            page = self._call(
                "POST",
                "runs/search",
                {
                    "experiment_ids": [experiment_id],
                    "max_results": _PAGE,
                    "order_by": ["attributes.start_time ASC", "attributes.run_id ASC"],
                    "run_view_type": "ACTIVE_ONLY",
                    **({"page_token": token} if token else {}),
                },
            )
            pages += 1
            for run in page.get("runs") or []:
                listed.append(self._listed(run, wanted))
            self._progress(f"listing runs of {experiment!r}: page {pages}, {len(listed)} runs")
            token = page.get("next_page_token") or None
            if not token:
                break
            if len(listed) >= self._limits.max_runs or pages >= self._limits.max_pages:
                notes.append(
                    f"the server still had more after {pages} pages and {len(listed)} runs: "
                    f"listed the first {min(len(listed), self._limits.max_runs)} only"
                )
                break
        return listed[: self._limits.max_runs], notes

    def _listed(self, run: Any, wanted: Callable[[str], bool]) -> ListedRun:
        info = run.get("info") or {}
        run_id = str(info.get("run_id") or info.get("run_uuid") or "")
        return ListedRun(printable(run_id, 64), partial(self._read, run, wanted))

    def _read(self, run: Any, wanted: Callable[[str], bool]) -> MlflowRun:
        info, data = run.get("info") or {}, run.get("data") or {}
        run_id = str(info.get("run_id") or info.get("run_uuid") or "")
        params = {str(p["key"]): str(p.get("value", "")) for p in data.get("params") or []}
        metrics = {str(m["key"]): float(m["value"]) for m in data.get("metrics") or []}
        history = {key: self._history(run_id, key) for key in sorted(metrics) if wanted(key)}
        return MlflowRun(
            run_id=run_id,
            name=str(info.get("run_name") or ""),
            status=str(info.get("status") or ""),
            start_ms=_int(info.get("start_time")),
            end_ms=_int(info.get("end_time")),
            params=params,
            metrics=metrics,
            history=history,
        )

    def _history(self, run_id: str, key: str) -> tuple[tuple[int, float], ...]:
        points: list[tuple[int, float]] = []
        token: str | None = None
        for _ in range(self._limits.max_pages):
            page = self._call(
                "GET",
                "metrics/get-history",
                run_id=run_id,
                metric_key=key,
                max_results=_PAGE,
                page_token=token,
            )
            points += [
                (int(m.get("step", 0)), float(m["value"])) for m in page.get("metrics") or []
            ]
            token = page.get("next_page_token") or None
            if not token or len(points) >= self._limits.max_points:
                break
        return tuple(sorted(points[: self._limits.max_points]))
