"""Lastmile's Grafana dashboards as code: `python deploy/grafana/generate_dashboards.py` writes dashboards/*.json.

The JSON files are committed; docker-compose provisions them and the Kubernetes monitoring component turns the
same files into ConfigMaps for Grafana's sidecar. `--check` fails when a committed file differs from what this
script writes (make test runs it). To add a panel, add a `panel(...)` to a row below and run `make deploy-gen`.
Every query may use `$__rate_interval`; the service dashboard's may use `$service`. A test scrapes a running
stack with a real Prometheus and fails on any query that returns no data.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    service_variable: bool = False
    tags: tuple[str, ...] = field(default=("lastmile",))


def panel(
    title: str,
    *queries: str | tuple[str, str],
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    width: int = 8,
) -> Panel:
    """`queries` are PromQL expressions, or (expression, legend) pairs."""
    built = tuple(Query(q) if isinstance(q, str) else Query(*q) for q in queries)
    return Panel(title, built, unit, kind, description, width)


def ratio_or_zero(metric: str, matcher: str, by: str, window: str = RATE, where: str = "") -> str:
    """The share of `metric`'s rate that matches `matcher`, per `by`: 0 (not 'no data') while none matches."""
    part = f"sum by ({by}) (rate({metric}{{{', '.join(m for m in (where, matcher) if m)}}}[{window}]))"
    whole = (
        f"sum by ({by}) (rate({metric}{{{where}}}[{window}]))"
        if where
        else f"sum by ({by}) (rate({metric}[{window}]))"
    )
    return f"({part} or {whole} * 0) / {whole}"


def counted(metric: str, by: str, window: str, where: str = "") -> str:
    """How much a counter rose in `window`, per `by`, counting series born in the window by their value
    (increase() sees no rise from a series that did not exist: a labelled counter appears at its first event)."""
    series = f"{metric}{{{where}}}" if where else metric
    return f"sum by ({by}) (({series} unless {series} offset {window}) or increase({series}[{window}]))"


# ---------------------------------------------------------------------------------------------------------
# The operations dashboard: is the day going well, and where is it not?

OPERATIONS = Dashboard(
    uid="lastmile-operations",
    title="Lastmile / Operations",
    description="Orders, planning, vehicles on the road, customer messages, event flow and the services' HTTP edge.",
    rows=(
        Row(
            "Orders",
            (
                panel(
                    "Orders per minute by merchant",
                    (
                        f"sum by (merchant) (rate(lastmile_order_intake_orders_received_total[{RATE}])) * 60",
                        "{{merchant}}",
                    ),
                    unit="short",
                    description="Orders accepted by order-intake, per merchant id.",
                    width=16,
                ),
                panel(
                    "Orders accepted (1h)",
                    counted("lastmile_order_intake_orders_received_total", "", "1h"),
                    kind="stat",
                ),
            ),
        ),
        Row(
            "Planning",
            (
                panel(
                    "Planning duration",
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(lastmile_planner_solve_duration_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(lastmile_planner_solve_duration_seconds_bucket[{RATE}])))",
                        "p95",
                    ),
                    unit="s",
                    description="Time VROOM takes for one depot-day.",
                ),
                panel(
                    "Jobs planned and unassigned per minute",
                    (f"sum(rate(lastmile_planner_jobs_planned_total[{RATE}])) * 60", "planned"),
                    (
                        f"sum by (reason) (rate(lastmile_planner_jobs_unassigned_total[{RATE}])) * 60",
                        "unassigned: {{reason}}",
                    ),
                ),
                panel(
                    "Unassigned jobs (1h) by depot and reason",
                    (
                        counted("lastmile_planner_jobs_unassigned_total", "depot, reason", "1h"),
                        "{{depot}} {{reason}}",
                    ),
                    kind="stat",
                    description="Orders no vehicle can serve: add capacity or time, or fix the order.",
                ),
            ),
        ),
        Row(
            "On the road",
            (
                panel(
                    "On-time rate (1h)",
                    "(sum(rate(lastmile_tracker_stops_completed_total"
                    '{outcome="delivered", on_time="true"}[1h])) or vector(0))'
                    ' / sum(rate(lastmile_tracker_stops_completed_total{outcome="delivered"}[1h]))',
                    unit="percentunit",
                    kind="stat",
                    description="Deliveries completed inside the window promised to the customer.",
                ),
                panel(
                    "ETA error",
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(lastmile_tracker_eta_error_seconds_bucket[{RATE}])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.9, sum by (le) "
                        f"(rate(lastmile_tracker_eta_error_seconds_bucket[{RATE}])))",
                        "p90",
                    ),
                    unit="s",
                    description="How far the last ETA was from the actual arrival, at each completed stop.",
                ),
                panel(
                    "Stops completed per minute",
                    (
                        f"sum by (outcome) (rate(lastmile_tracker_stops_completed_total[{RATE}])) * 60",
                        "{{outcome}}",
                    ),
                ),
                panel(
                    "Pings per second by outcome",
                    (f"sum by (outcome) (rate(lastmile_tracker_pings_total[{RATE}]))", "{{outcome}}"),
                    description="GPS pings from drivers' phones: ok, duplicate, or the reason they were refused.",
                ),
                panel(
                    "Active routes",
                    "sum(lastmile_tracker_routes_active)",
                    kind="stat",
                    description="Routes being driven: started, not yet finished.",
                ),
                panel(
                    "Active vehicles",
                    "sum(lastmile_tracker_vehicles_active)",
                    kind="stat",
                    description="Vehicles whose phones reported in the last ten minutes.",
                ),
            ),
        ),
        Row(
            "Customers and merchants",
            (
                panel(
                    "Messages per minute by channel and outcome",
                    (
                        f"sum by (channel, outcome) (rate(lastmile_notifier_messages_total[{RATE}])) * 60",
                        "{{channel}} {{outcome}}",
                    ),
                    width=16,
                ),
                panel(
                    "Message failure rate by channel",
                    (
                        ratio_or_zero(
                            "lastmile_notifier_messages_total", 'outcome!="sent"', "channel", "15m"
                        ),
                        "{{channel}}",
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Events",
            (
                panel(
                    "Consumer lag by service and topic",
                    ("sum by (service, topic) (lastmile_consumer_lag_messages)", "{{service}} {{topic}}"),
                    description="Records behind the end of each partition, summed per topic.",
                ),
                panel(
                    "Dead-lettered events (1h)",
                    (
                        counted("lastmile_events_dead_lettered_total", "service, topic, reason", "1h"),
                        "{{service}} {{topic}} {{reason}}",
                    ),
                    kind="stat",
                    description="Events sent to <topic>.dlq: the orders they concern wait for a replay.",
                ),
                panel(
                    "Outbox backlog",
                    ("sum by (service) (lastmile_outbox_backlog_events)", "{{service}}"),
                    description="Events committed but not yet published to Kafka.",
                ),
            ),
        ),
        Row(
            "HTTP",
            (
                panel(
                    "Requests per second by service",
                    (f"sum by (service) (rate(lastmile_http_requests_total[{RATE}]))", "{{service}}"),
                ),
                panel(
                    "Server errors (5xx) by service",
                    (
                        ratio_or_zero("lastmile_http_requests_total", 'status=~"5.."', "service"),
                        "{{service}}",
                    ),
                    unit="percentunit",
                ),
                panel(
                    "Latency p95 by service",
                    (
                        "histogram_quantile(0.95, sum by (service, le) "
                        f"(rate(lastmile_http_request_duration_seconds_bucket[{RATE}])))",
                        "{{service}}",
                    ),
                    unit="s",
                ),
            ),
        ),
    ),
)

# Panels the issue asks for that no metric backs yet: (panel title, the metric it waits for). A test fails as soon
# as the metric appears in the code, so that the panel is moved into its row above.
PENDING: tuple[tuple[str, str], ...] = (("Webhook failures", "lastmile_notifier_webhooks_total"),)

# ---------------------------------------------------------------------------------------------------------
# The service dashboard: one service's HTTP edge, event flow and process, chosen with $service.

SERVICE_MATCHER = 'service="$service"'
S = "{" + SERVICE_MATCHER + "}"

SERVICE = Dashboard(
    uid="lastmile-service",
    title="Lastmile / Service",
    description="One service: health, HTTP routes, the events it consumes and publishes, its process.",
    service_variable=True,
    rows=(
        Row(
            "Health",
            (
                panel("Instances up", f"sum(up{S})", kind="stat", width=6),
                panel("Instances ready", f"sum(lastmile_ready{S})", kind="stat", width=6),
                panel(
                    "Server errors (5xx)",
                    ratio_or_zero(
                        "lastmile_http_requests_total", 'status=~"5.."', "service", where=SERVICE_MATCHER
                    ),
                    unit="percentunit",
                    kind="stat",
                    width=6,
                ),
                panel(
                    "Requests per second",
                    f"sum(rate(lastmile_http_requests_total{S}[{RATE}]))",
                    unit="reqps",
                    kind="stat",
                    width=6,
                ),
            ),
        ),
        Row(
            "HTTP",
            (
                panel(
                    "Requests per second by route and status",
                    (
                        f"sum by (method, route, status) (rate(lastmile_http_requests_total{S}[{RATE}]))",
                        "{{method}} {{route}} {{status}}",
                    ),
                    unit="reqps",
                    width=12,
                ),
                panel(
                    "Latency p95 by route",
                    (
                        "histogram_quantile(0.95, sum by (method, route, le) "
                        f"(rate(lastmile_http_request_duration_seconds_bucket{S}[{RATE}])))",
                        "{{method}} {{route}}",
                    ),
                    unit="s",
                    width=12,
                ),
            ),
        ),
        Row(
            "Events",
            (
                panel(
                    "Events consumed per second by topic and outcome",
                    (
                        f"sum by (topic, outcome) (rate(lastmile_events_consumed_total{S}[{RATE}]))",
                        "{{topic}} {{outcome}}",
                    ),
                ),
                panel(
                    "Handling latency p95 by topic",
                    (
                        "histogram_quantile(0.95, sum by (topic, le) "
                        f"(rate(lastmile_event_handle_duration_seconds_bucket{S}[{RATE}])))",
                        "{{topic}}",
                    ),
                    unit="s",
                ),
                panel(
                    "Handler failures per second by topic",
                    (
                        f"sum by (topic) (rate(lastmile_events_failed_total{S}[{RATE}]))"
                        f" or sum by (topic) (rate(lastmile_events_consumed_total{S}[{RATE}])) * 0",
                        "{{topic}}",
                    ),
                    description="Handler attempts that raised (retried, then dead-lettered).",
                ),
                panel(
                    "Consumer lag by topic",
                    (f"sum by (topic) (lastmile_consumer_lag_messages{S})", "{{topic}}"),
                ),
                panel(
                    "Dead-lettered events (1h) by topic",
                    (
                        counted("lastmile_events_dead_lettered_total", "topic", "1h", SERVICE_MATCHER)
                        + f" or sum by (topic) (rate(lastmile_events_consumed_total{S}[{RATE}])) * 0",
                        "{{topic}}",
                    ),
                ),
                panel(
                    "Events published per second and outbox backlog",
                    (f"sum by (topic) (rate(lastmile_events_produced_total{S}[{RATE}]))", "{{topic}}"),
                    (f"sum(lastmile_outbox_backlog_events{S})", "backlog"),
                ),
            ),
        ),
        Row(
            "Process",
            (
                panel(
                    "CPU (cores) by instance",
                    (f"rate(process_cpu_seconds_total{S}[{RATE}])", "{{instance}}"),
                    width=12,
                ),
                panel(
                    "Resident memory by instance",
                    (f"process_resident_memory_bytes{S}", "{{instance}}"),
                    unit="bytes",
                    width=12,
                ),
            ),
        ),
    ),
)

DASHBOARDS = (OPERATIONS, SERVICE)

# ---------------------------------------------------------------------------------------------------------
# Grafana's JSON model


def render(board: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row in board.rows:
        panels.append(
            {
                "id": len(panels) + 1,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x = 0
        for p in row.panels:
            if x + p.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(p, len(panels) + 1, x, y))
            x += p.width
        y += 8
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": list(board.tags),
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables(board)},
        "panels": panels,
    }


def _panel(p: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": True,
        }
        for i, q in enumerate(p.queries)
    ]
    options: dict[str, Any]
    if p.kind == "stat":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    else:
        options = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "id": panel_id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": options,
        "targets": targets,
    }


def _variables(board: Dashboard) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        }
    ]
    if board.service_variable:
        definition = "label_values(lastmile_http_requests_total, service)"
        variables.append(
            {
                "name": "service",
                "label": "Service",
                "type": "query",
                "datasource": DATASOURCE,
                "definition": definition,
                "query": {"query": definition, "refId": "service"},
                "refresh": 2,
                "sort": 1,
                "current": {},
                "includeAll": False,
                "multi": False,
                "hide": 0,
            }
        )
    return variables


def files() -> dict[Path, str]:
    return {OUT / f"{b.uid}.json": json.dumps(render(b), indent=2) + "\n" for b in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file is not current")
    args = parser.parse_args(argv)
    stale = []
    for path, text in files().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        names = ", ".join(str(p.relative_to(HERE.parent.parent)) for p in stale)
        print(f"not current: {names}; run `make deploy-gen`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
