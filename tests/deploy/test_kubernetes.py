"""deploy/k8s: every overlay renders with kustomize and validates against the Kubernetes schemas (the PyPI package
kubernetes-validate bundles them) and the custom resources' schemas in ../shared/data/k8s-schemas; the
Deployments are hardened as the design asks; topics and settings agree with the code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from lastmile.common.events import TOPICS

SERVICES = ("order-intake", "planner", "tracker", "notifier")
# The oldest Kubernetes minor we support, and the newest the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", latest_version())
# CloudNativePG publishes no JSON schema that is available offline here (../shared has Strimzi's and the
# Prometheus Operator's only): its resources are checked by test_cloudnativepg_resources_hold_what_we_rely_on
# below, by hand, not against a schema.
NO_SCHEMA = {("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "Database")}
Docs = list[dict[str, Any]]


def of_kind(docs: Docs, kind: str) -> Docs:
    return [d for d in docs if d["kind"] == kind]


def named(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def crd_schema(shared: Path, doc: dict[str, Any]) -> Path | None:
    group, _, version = doc["apiVersion"].rpartition("/")
    if not group or "." not in group or group.endswith(".k8s.io"):
        return None
    return shared / "data" / "k8s-schemas" / group / f"{doc['kind'].lower()}_{version}.json"


def test_every_overlay_renders(rendered: dict[str, Docs]) -> None:
    assert {"base", "development", "production", "production-external-postgres"} <= set(rendered)
    for name, docs in rendered.items():
        assert docs, f"{name} rendered nothing"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_resources_validate_against_the_kubernetes_schemas(
    rendered: dict[str, Docs], shared_data: Path, version: str
) -> None:
    failures = []
    for overlay, docs in rendered.items():
        for doc in docs:
            if crd_schema(shared_data, doc) is not None:
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as exc:  # ValidationError or SchemaNotFoundError: both are failures here
                failures.append(f"{overlay}: {doc['kind']} {doc['metadata'].get('name')}: {exc}")
    assert not failures, "\n".join(failures)


def test_custom_resources_validate_against_their_schemas(
    rendered: dict[str, Docs], shared_data: Path
) -> None:
    checked, failures = set(), []
    for overlay, docs in rendered.items():
        for doc in docs:
            path = crd_schema(shared_data, doc)
            if path is None or (doc["apiVersion"], doc["kind"]) in NO_SCHEMA:
                continue
            assert path.exists(), f"no schema for {doc['apiVersion']} {doc['kind']} at {path}"
            schema = json.loads(path.read_text())
            validator = jsonschema.Draft7Validator(schema)
            for error in validator.iter_errors(doc):
                where = "/".join(str(p) for p in error.absolute_path)
                failures.append(
                    f"{overlay}: {doc['kind']} {doc['metadata']['name']} at {where}: {error.message}"
                )
            checked.add(doc["kind"])
    assert not failures, "\n".join(failures)
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "ServiceMonitor", "PrometheusRule"} <= checked


def test_every_resource_is_validated_by_a_schema_or_named_as_unvalidated(
    rendered: dict[str, Docs], shared_data: Path
) -> None:
    custom = {
        (d["apiVersion"], d["kind"])
        for docs in rendered.values()
        for d in docs
        if crd_schema(shared_data, d) is not None
    }
    without_schema = {
        k for k in custom if not crd_schema(shared_data, {"apiVersion": k[0], "kind": k[1]}).exists()
    }  # type: ignore[union-attr]
    assert without_schema == NO_SCHEMA


def test_cloudnativepg_resources_hold_what_we_rely_on(rendered: dict[str, Docs]) -> None:
    for overlay in ("development", "production"):
        docs = rendered[overlay]
        cluster = named(docs, "Cluster", "lastmile-pg")
        spec = cluster["spec"]
        assert isinstance(spec["instances"], int)
        assert spec["instances"] >= 1
        assert re.fullmatch(r"\d+(Mi|Gi|Ti)", spec["storage"]["size"])
        initdb = spec["bootstrap"]["initdb"]
        databases = {initdb["database"]: initdb["owner"]}
        for db in of_kind(docs, "Database"):
            assert db["apiVersion"] == "postgresql.cnpg.io/v1"
            assert db["spec"]["cluster"] == {"name": "lastmile-pg"}
            databases[db["spec"]["name"]] = db["spec"]["owner"]
        assert databases == {s.replace("-", "_"): "lastmile" for s in SERVICES}
        # the Deployments connect to the Cluster's read-write Service with its generated app credentials
        for service in SERVICES:
            env = named(docs, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]["env"]
            names = [e["name"] for e in env]
            url = env[names.index("LASTMILE_DATABASE_URL")]
            assert url["value"] == (
                f"postgresql+asyncpg://$(PGUSER):$(PGPASSWORD)@lastmile-pg-rw:5432/{service.replace('-', '_')}"
            )
            assert names.index("PGUSER") < names.index(
                "LASTMILE_DATABASE_URL"
            )  # $(VAR) sees only earlier ones
            assert names.index("PGPASSWORD") < names.index("LASTMILE_DATABASE_URL")
            assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if e["name"].startswith("PG")} == {
                "lastmile-pg-app"
            }


def test_external_postgres_overlay_reads_each_database_url_from_a_secret(rendered: dict[str, Docs]) -> None:
    docs = rendered["production-external-postgres"]
    assert not of_kind(docs, "Cluster")
    assert not of_kind(docs, "Database")
    for service in SERVICES:
        env = named(docs, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]["env"]
        url = next(e for e in env if e["name"] == "LASTMILE_DATABASE_URL")
        assert url["valueFrom"]["secretKeyRef"] == {"name": f"{service}-db", "key": "url"}


def test_components_switch_kafka_postgres_and_monitoring_on_and_off(rendered: dict[str, Docs]) -> None:
    def kinds(name: str) -> set[str]:
        return {d["kind"] for d in rendered[name]}

    operator_kinds = {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "Cluster",
        "Database",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert not kinds("base") & operator_kinds
    assert operator_kinds <= kinds("development")
    assert operator_kinds <= kinds("production")
    assert operator_kinds - {"Cluster", "Database"} <= kinds("production-external-postgres")


@pytest.mark.parametrize("overlay", ["base", "development", "production", "production-external-postgres"])
def test_each_service_has_its_deployment_service_account_config_autoscaler_budget_and_policy(
    rendered: dict[str, Docs], overlay: str
) -> None:
    docs = rendered[overlay]
    for service in SERVICES:
        for kind in (
            "Deployment",
            "Service",
            "ServiceAccount",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
        ):
            named(docs, kind, service)
        assert any(d["metadata"]["name"].startswith(service) for d in of_kind(docs, "ConfigMap"))


@pytest.mark.parametrize("overlay", ["development", "production", "production-external-postgres"])
def test_deployments_are_probed_limited_and_unprivileged(rendered: dict[str, Docs], overlay: str) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"])
            assert {"cpu", "memory"} <= set(resources["limits"])
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert "add" not in security["capabilities"]


def test_services_scale_on_cpu_within_the_partition_count(rendered: dict[str, Docs]) -> None:
    for hpa in of_kind(rendered["production"], "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= 6


def test_the_tracker_exposes_the_osmand_port(rendered: dict[str, Docs]) -> None:
    docs = rendered["production"]
    container = named(docs, "Deployment", "tracker")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "osmand", "containerPort": 5055} in container["ports"]
    assert any(p["port"] == 5055 for p in named(docs, "Service", "tracker")["spec"]["ports"])
    ingress = named(docs, "NetworkPolicy", "tracker")["spec"]["ingress"]
    assert any(p["port"] == "osmand" for rule in ingress for p in rule["ports"])


@pytest.mark.parametrize("overlay", ["base", "development", "production"])
def test_config_maps_hold_only_settings_the_services_read(
    rendered: dict[str, Docs], overlay: str, unread_settings: Callable[[str, list[str]], list[str]]
) -> None:
    for service in SERVICES:
        config = next(
            d for d in of_kind(rendered[overlay], "ConfigMap") if d["metadata"]["name"].startswith(service)
        )
        env = named(rendered[overlay], "Deployment", service)["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
        names = list(config["data"]) + [e["name"] for e in env]
        assert all(n.startswith(("LASTMILE_", "PG")) for n in names), names
        assert unread_settings(service, names) == [], f"{service} does not read these"
        assert config["data"]["LASTMILE_KAFKA_CREATE_TOPICS"] == "false"  # the Topic Operator owns topics


def test_kafka_topics_are_the_codes_topics_and_their_dead_letter_topics(rendered: dict[str, Docs]) -> None:
    for overlay in ("development", "production"):
        topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(rendered[overlay], "KafkaTopic")}
        assert set(topics) == {n for t in TOPICS for n in (t.name, t.dlq)}
        for topic in TOPICS:
            assert topics[topic.name]["partitions"] >= 3
        # co-partitioned by vehicle: the tracker instance that owns a vehicle has its route and its pings
        assert topics["routes.v1"]["partitions"] == topics["locations.v1"]["partitions"]
        for spec in topics.values():
            brokers = 1 if overlay == "development" else 3
            assert spec["replicas"] == brokers
            assert spec["config"]["min.insync.replicas"] == min(2, brokers)
        pool = named(rendered[overlay], "KafkaNodePool", "dual-role")
        assert pool["spec"]["replicas"] == (1 if overlay == "development" else 3)
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "lastmile"


def test_dashboards_are_config_maps_for_grafanas_sidecar_made_from_the_committed_files(
    rendered: dict[str, Docs],
) -> None:
    root = Path(__file__).resolve().parents[2]
    maps = [
        d
        for d in of_kind(rendered["production"], "ConfigMap")
        if d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    files = {p.name: p.read_text() for p in (root / "deploy" / "grafana" / "dashboards").glob("*.json")}
    assert {name: text for m in maps for name, text in m["data"].items()} == files


def test_the_prometheus_rule_carries_the_rules_file(rendered: dict[str, Docs]) -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    source = yaml.safe_load((root / "deploy" / "prometheus" / "rules" / "lastmile.rules.yml").read_text())
    rule = named(rendered["production"], "PrometheusRule", "lastmile")
    assert rule["spec"]["groups"] == source["groups"]
    monitor = named(rendered["production"], "ServiceMonitor", "lastmile")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
