"""deploy/prometheus and deploy/grafana: the rules pass promtool's checks and unit tests, each alert says what to
do, generated files are current, and dashboards and rules only name metrics the code defines."""

from __future__ import annotations

import importlib
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PACKAGES = ("common", "order_intake", "planner", "tracker", "notifier")
METRIC = re.compile(r"\b(?:lastmile|process|python)_[a-z0-9_]+\b")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    return subprocess.run(
        ["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return found


def dashboard_queries() -> list[str]:
    import json

    queries = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        queries += [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        queries += [v["definition"] for v in board["templating"]["list"] if v.get("definition")]
    return queries


def defined_metrics() -> set[str]:
    """Every series name the services can expose: each module of lastmile.common and the four services is
    imported, so that the metrics defined at the top of the modules are registered."""
    for package in PACKAGES:
        module = importlib.import_module(f"lastmile.{package}")
        for info in pkgutil.iter_modules(module.__path__):
            if not info.ispkg and info.name != "__main__":
                importlib.import_module(f"lastmile.{package}.{info.name}")
    names = {"up"}
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
        "info": ("_info",),
    }
    for family in REGISTRY.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def test_rules_pass_promtools_check() -> None:
    result = promtool("check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
    assert tests
    result = promtool("test", "rules", *(t.name for t in tests), cwd=PROMETHEUS / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert {r["alert"] for r in rules()} == tested


def test_the_scrape_config_passes_promtools_check() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_severity_and_a_runbook_that_exists() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\S+)", runbooks, re.M)}
    alerts = rules()
    assert {
        "LastmileServiceDown",
        "LastmileConsumerLagGrowing",
        "LastmileDeadLetters",
        "LastmileOutboxBacklog",
        "LastmileMessageFailureRate",
        "LastmileUnassignedJobs",
        "LastmileEtaErrorDrifting",
    } <= {r["alert"] for r in alerts}
    for rule in alerts:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert len(rule["annotations"]["runbook"]) > 20, rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbooks.md has no section for {rule['alert']}"


@pytest.mark.parametrize(
    "script", ["deploy/grafana/generate_dashboards.py", "deploy/prometheus/generate_rules.py"]
)
def test_generated_files_are_current(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / script), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dashboards_and_rules_name_only_metrics_the_code_defines() -> None:
    defined = defined_metrics()
    expressions = dashboard_queries() + [r["expr"] for r in rules()]
    used = {m for e in expressions for m in METRIC.findall(e)}
    assert used, "no metric found in the queries"
    assert used - defined == set()


def test_panels_waiting_for_a_metric_move_in_once_it_exists() -> None:
    sys.path.insert(0, str(GRAFANA))
    try:
        generator = importlib.import_module("generate_dashboards")
    finally:
        sys.path.remove(str(GRAFANA))
    defined = defined_metrics()
    arrived = [
        (title, metric)
        for title, metric in generator.PENDING
        if metric in defined or metric + "_total" in defined
    ]
    assert not arrived, (
        f"these metrics now exist: add their panels to deploy/grafana/generate_dashboards.py: {arrived}"
    )
