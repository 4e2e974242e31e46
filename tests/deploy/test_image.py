"""The Dockerfile: one multi-stage recipe for the four services, slim, unprivileged, with a health check. No
Docker engine here, so the recipe is read, and the commands it runs that need the code are run against it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("order-intake", "planner", "tracker", "notifier")
PORTS = {"order-intake": 8001, "planner": 8002, "tracker": 8003, "notifier": 8004}


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_the_image_is_built_in_stages_on_a_slim_python() -> None:
    stages = [arg for op, arg in instructions() if op == "FROM"]
    assert len(stages) >= 2
    assert any(op == "ARG" and arg.startswith("PYTHON=") and "slim" in arg for op, arg in instructions())
    assert runtime_stage()[0][1].startswith("python:${PYTHON}")
    copies = [arg for op, arg in runtime_stage() if op == "COPY"]
    assert copies == ["--from=build /venv /venv"]  # sources and build tools stay in the build stage


def test_the_service_runs_unprivileged_with_a_health_check() -> None:
    stage = runtime_stage()
    (user,) = [arg for op, arg in stage if op == "USER"]
    assert user.split(":")[0].isdigit()
    assert int(user.split(":")[0]) >= 10000
    (check,) = [arg for op, arg in stage if op == "HEALTHCHECK"]
    assert "/healthz" in check
    assert [op for op, _ in stage][-1] == "CMD"


def test_each_service_installs_the_command_the_image_runs() -> None:
    (cmd,) = [arg for op, arg in runtime_stage() if op == "CMD"]
    assert "exec lastmile-${SERVICE}" in cmd
    for service in SERVICES:
        project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
        assert f"lastmile-{service}" in project["scripts"]


def test_the_health_check_finds_each_services_default_port() -> None:
    """The build stage writes the service's default port (read from its settings class) for the health check."""
    (build,) = [arg for op, arg in instructions() if op == "RUN" and "lastmile-port" in arg]
    snippet = re.search(r'-c "(.*)"\s+>\s*/venv/lastmile-port', build)
    assert snippet is not None
    for service in SERVICES:
        result = subprocess.run(
            [sys.executable, "-c", snippet.group(1)],
            env={"SERVICE": service, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == str(PORTS[service])
