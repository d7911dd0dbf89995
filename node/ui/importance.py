"""Hyperparameter importances for the Study page, computed by Optuna in a child process.

The UI never imports optuna (an import-linter contract: the node and its UI stay free of the
training stack), yet the importances must be Optuna's own. So the UI hands the study's
complete trials, as read from the storage, to `python -m gridpoint.trainers.importance` (which
may import optuna) and keeps the answer in memory, keyed by a digest of exactly what it
handed over: a study that gained a trial is computed again, the same one is not.

Bounded: one child at a time, at most MAX_TRIALS trials (the newest), CHILD_TIMEOUT_S
seconds, CACHE_ENTRIES answers kept.

Must never pass the child anything but parameters and values, nor wait on it without a limit.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

from gridpoint.node.ui.studies import StudyView

__all__ = ["Importances", "ImportanceCache"]

#: Most complete trials handed to the evaluator (the newest).
MAX_TRIALS = 2_000
CHILD_TIMEOUT_S = 120.0
CACHE_ENTRIES = 32
_MODULE = "gridpoint.trainers.importance"


@dataclass(frozen=True)
class Importances:
    """Each parameter's share (largest first) and the evaluator's name, or why there are none."""

    values: dict[str, float]
    evaluator: str = ""
    error: str = ""


class ImportanceCache:
    """Importances by what they were computed from; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, Importances] = OrderedDict()

    def get(self, view: StudyView) -> Importances:
        """The study's importances: from memory, else from a child process."""
        complete = [t for t in view.complete if t.internal and not t.problem][-MAX_TRIALS:]
        names = sorted({k for t in complete for k in t.internal})
        payload = json.dumps(
            {
                "maximize": view.maximize,
                "distributions": {n: view.spaces[n].distribution for n in names},
                "trials": [[t.internal, t.value] for t in complete],
            },
            sort_keys=True,
        ).encode()
        key = hashlib.sha256(payload).hexdigest()
        # One child at a time: a second page asking meanwhile waits, then finds the answer.
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
            found = _run(payload) if names else Importances({}, error="no parameters to rank")
            self._answers[key] = found
            while len(self._answers) > CACHE_ENTRIES:
                self._answers.popitem(last=False)
            return found


def _run(payload: bytes) -> Importances:
    try:
        done = subprocess.run(
            [sys.executable, "-m", _MODULE],
            input=payload,
            capture_output=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Importances({}, error=f"Optuna took more than {CHILD_TIMEOUT_S:.0f} s")
    try:
        answer = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        missing = "No module named" in done.stderr.decode(errors="replace")
        return Importances(
            {},
            error="hyperparameter importance needs optuna (the `train` extra)"
            if missing
            else f"the importance evaluator failed (exit status {done.returncode})",
        )
    if not isinstance(answer, dict) or "error" in answer:
        error = answer.get("error") if isinstance(answer, dict) else None
        return Importances({}, error=str(error or "no answer"))
    return Importances(
        {str(k): float(v) for k, v in dict(answer["importances"]).items()},
        evaluator=str(answer.get("evaluator", "")),
    )
