"""docker-compose.yml validates against the Compose specification's schema (bundled by the PyPI package
check-jsonschema, no internet needed), starts things in the right order, and sets only settings the services read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from lastmile.common.events import TOPICS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("order-intake", "planner", "tracker", "notifier")
PORTS = {"order-intake": 8001, "planner": 8002, "tracker": 8003, "notifier": 8004}


def compose_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    )
    return schema


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_validation_rejects_what_compose_would(compose: dict[str, Any]) -> None:
    broken = {
        **compose,
        "services": {**compose["services"], "planner": {**compose["services"]["planner"], "restart": 3}},
    }
    assert list(jsonschema.Draft202012Validator(compose_schema()).iter_errors(broken))


def test_the_whole_stack_is_there(compose: dict[str, Any]) -> None:
    assert {*SERVICES, "kafka", "kafka-init", "postgres", "prometheus", "grafana", "mailpit"} <= set(
        compose["services"]
    )
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_services_start_after_their_topics_and_databases_and_have_health_checks(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no health check"
        if name != "kafka-init":
            assert "healthcheck" in service, f"{name} has no health check"
    for name in SERVICES:
        assert services[name]["depends_on"]["kafka-init"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"])
    assert services["kafka-init"]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    assert services["grafana"]["depends_on"]["prometheus"] == {"condition": "service_healthy"}


def test_services_get_only_settings_they_read(
    compose: dict[str, Any], unread_settings: Callable[[str, list[str]], list[str]]
) -> None:
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        assert unread_settings(name, list(env)) == [], f"{name} does not read these"
        assert str(env["LASTMILE_PORT"]) == str(PORTS[name])
        assert env["LASTMILE_BUS"] == "kafka"
        assert env["LASTMILE_KAFKA_CREATE_TOPICS"] == "false"
        assert f"{PORTS[name]}:{PORTS[name]}" in compose["services"][name]["ports"]
    assert "5055:5055" in compose["services"]["tracker"]["ports"]


def test_each_service_has_its_own_database(compose: dict[str, Any]) -> None:
    init = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+);", init))
    for name in SERVICES:
        url = compose["services"][name]["environment"]["LASTMILE_DATABASE_URL"]
        database = url.rsplit("/", 1)[1]
        assert database == name.replace("-", "_")
        assert database in created


def test_kafka_init_creates_the_codes_topics_with_their_partitions(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["kafka-init"]["command"])
    created = {m[0]: int(m[1]) for m in re.findall(r"^\s*create (\S+) (\d+) \d+$", script, re.M)}
    assert created == {n: (1 if n.endswith(".dlq") else 6) for t in TOPICS for n in (t.name, t.dlq)}


def test_prometheus_and_grafana_read_the_shared_deploy_files(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in prometheus
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    for mount in [*prometheus, *grafana]:
        source = mount.split(":")[0]
        assert not source.startswith("./") or (ROOT / source).exists(), f"{source} does not exist"
