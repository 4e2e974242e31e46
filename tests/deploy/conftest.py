"""Fixtures for the deployment checks: the repository's deploy files, rendered manifests and the settings the
services read. Nothing here needs a cluster, a Docker engine or the internet."""

from __future__ import annotations

import importlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lastmile.common.settings import CommonSettings
from lastmile.common.testing import eventually
from lastmile.sim.distributed import Stack

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
SERVICES = ("order-intake", "planner", "tracker", "notifier")


def _settings_class(service: str) -> type[CommonSettings]:
    """The service's settings class: the fields it reads from LASTMILE_* variables."""
    module = importlib.import_module(f"lastmile.{service.replace('-', '_')}.settings")
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, CommonSettings) and v is not CommonSettings
    ]
    assert len(found) == 1, f"{module.__name__} should define one settings class"
    return found[0]


def _unread_settings(service: str, names: list[str]) -> list[str]:
    """The LASTMILE_* names the service would ignore (its settings ignore unknown variables silently)."""
    fields = set(_settings_class(service).model_fields)
    return [
        n for n in names if n.startswith("LASTMILE_") and n.removeprefix("LASTMILE_").lower() not in fields
    ]


def _kustomize(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay (and the base alone), rendered by kustomize."""
    out = {name: _kustomize(K8S / "overlays" / name) for name in OVERLAYS}
    out["base"] = _kustomize(K8S / "base")
    return out


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="session")
def unread_settings() -> Callable[[str, list[str]], list[str]]:
    return _unread_settings


@pytest.fixture(scope="session")
def settings_class() -> Callable[[str], type[CommonSettings]]:
    return _settings_class


@dataclass
class Prometheus:
    """A real Prometheus (Debian's package) scraping a running stack with deploy/prometheus's configuration."""

    url: str
    process: subprocess.Popen[bytes]

    async def query_range(self, http: Any, expr: str, start: float, end: float, step: str = "1s") -> Any:
        reply = await http.get(
            self.url + "/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step}
        )
        assert reply.status_code == 200, f"{expr}: {reply.text}"
        return reply.json()["data"]["result"]

    async def query(self, http: Any, expr: str) -> Any:
        reply = await http.get(self.url + "/api/v1/query", params={"query": expr})
        assert reply.status_code == 200, f"{expr}: {reply.text}"
        return reply.json()["data"]["result"]


def scrape_config(stack: Stack, data: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with each job's target pointed at the stack's port, scraped every second,
    and the rules read from the repository."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"})
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(SERVICES), "the scrape config should have one job per service"
    for service, job in jobs.items():
        (target,) = job["static_configs"]
        assert target["labels"] == {"service": service}
        target["targets"] = [f"{stack.host}:{stack.ports[service]}"]
    return config


@pytest.fixture
async def prometheus(stack: Stack, tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: `make system-deps` installs Debian's prometheus package")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(stack, tmp_path)))
    address = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Prometheus(f"http://{address}", process)
    try:
        async with httpx.AsyncClient(timeout=3) as http:

            async def ready() -> bool:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    return (await http.get(running.url + "/-/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout=30, interval=0.2)

            async def scraping() -> bool:  # targets reach the scrape loop a few seconds after start
                return bool(await running.query(http, 'count(up{job=~".+"} == 1) == 4'))

            await eventually(scraping, timeout=30, interval=0.5)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
