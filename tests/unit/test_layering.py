"""Dependencies point one way: domain code imports no I/O, services never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"order_intake", "planner", "tracker", "notifier"}
DOMAIN_FORBIDDEN = (
    "store",
    "api",
    "app",
    "handlers",
    "bus",
    "outbox",
    "db",
    "solver",
    "channels",
    "sms",
    "email",
)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def service_modules() -> list[tuple[str, Path]]:
    return [
        (path.parent.name, path)
        for path in (ROOT / "services").glob("*/src/lastmile/*/*.py")
        if path.parent.name in SERVICES
    ]


def test_domain_modules_import_no_io() -> None:
    offenders = []
    for service, path in service_modules():
        if not path.name.startswith("domain"):  # domain.py and its parts split by use case (domain_eta.py)
            continue
        for name in imports(path):
            parts = name.split(".")
            if parts[:2] == ["lastmile", "common"] and len(parts) > 2 and parts[2] in DOMAIN_FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
            if parts[:2] == ["lastmile", service] and len(parts) > 2 and parts[2] in DOMAIN_FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
            if parts[0] in ("sqlalchemy", "aiokafka", "httpx", "fastapi", "vroom"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_services_never_import_each_other() -> None:
    offenders = []
    for service, path in service_modules():
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "lastmile" and len(parts) > 1 and parts[1] in SERVICES - {service}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)
