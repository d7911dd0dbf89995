"""The compose demo's last step: checks, through the CLI, that the story happened, and says so.

Run with the three homes mounted (`/homes/alpha`, `/homes/beta`, `/homes/consortium`) and the
demo steps' JSON summaries in the working folder. It checks that Beta's catalog holds Alpha's
trial records signed by Alpha, that Beta's warm-started study used Alpha's study as a prior,
and that the federation's record was published by its host and reached Beta. Prints what it
found; exits 1 naming every check that failed. Imports nothing of gridpoint: it drives the
`gridpoint` command as a user would, and prints no fingerprint, key or study name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HOMES = Path("/homes")


def gridpoint(org: str, *args: str) -> Any:
    done = subprocess.run(
        ["gridpoint", "--home", str(HOMES / org), *args, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"demo report: `gridpoint {' '.join(args)}` on {org}: {done.stderr.strip()}"
        )
    return json.loads(done.stdout)


def main() -> int:
    ids = {org: gridpoint(org, "identity")["node_id"] for org in ("alpha", "beta", "consortium")}
    warm = json.loads(Path("beta-warm.json").read_text())
    fed = json.loads(Path("fed.json").read_text())
    gridpoint("beta", "catalog", "sync")
    catalog = gridpoint("beta", "catalog", "query", "", "--limit", "1000")
    by_alpha = [r for r in catalog if r["signer"] == ids["alpha"]]
    priors = [p for p in warm["warm_start"]["priors"] if p.get("used")]
    from_alpha = [p for p in priors if p["signer"] == ids["alpha"]]
    published = gridpoint("consortium", "catalog", "query", f"id = '{fed['record_id']}'")
    at_beta = [r for r in catalog if r["id"] == fed["record_id"]]

    print("=== what happened ===")
    print(
        f"Beta's catalog: {len(catalog)} records; {len(by_alpha)} signed by Alpha, "
        f"{sum(r['signer'] == ids['consortium'] for r in catalog)} by the Consortium"
    )
    print(
        f"Beta's warm start used {len(priors)} prior(s), {len(from_alpha)} signed by Alpha "
        + ", ".join(f"(weight {p.get('weight', 0):.2f}, {p['trials']} trials)" for p in from_alpha)
    )
    print(
        f"federation: {len(fed['rounds'])} rounds, {len(fed['members'])} members; record "
        f"{fed['record_id'][:12]} published by the Consortium, in Beta's catalog: {bool(at_beta)}"
    )

    failures = []
    if not by_alpha:
        failures.append("Beta's catalog holds no record signed by Alpha")
    if not from_alpha:
        failures.append("Beta's warm-started study used no prior signed by Alpha")
    if not (len(published) == 1 and published[0]["signer"] == ids["consortium"]):
        failures.append("the Consortium's catalog does not hold the federation's record")
    if not at_beta:
        failures.append("the federation's record did not reach Beta's catalog")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if not failures:
        print("demo checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
