"""Fixtures for the deployment checks: the repository's deploy files, rendered manifests and the settings the
services read. Nothing here needs a cluster, a Docker engine or the internet."""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lastmile.common.settings import CommonSettings

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
    return [n for n in names if n.startswith("LASTMILE_") and n.removeprefix("LASTMILE_").lower() not in fields]


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
