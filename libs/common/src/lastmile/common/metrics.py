"""Prometheus metrics every service shares (HTTP, bus, outbox), and `/metrics` for one service.

Shared metrics carry a `service` label; business metrics are named `lastmile_<service>_<what>_<unit>` and sit at
the top of the module that increments them. In the embedded mode the four apps share one process, so each
app's `/metrics` shows only its own series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "lastmile_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "lastmile_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "lastmile_events_consumed_total", "Events handled by a consumer", ["service", "topic", "outcome"]
)
EVENTS_FAILED = Counter(
    "lastmile_events_failed_total", "Handler attempts that raised", ["service", "topic", "kind"]
)
EVENTS_DEAD_LETTERED = Counter(
    "lastmile_events_dead_lettered_total", "Events sent to <topic>.dlq", ["service", "topic", "reason"]
)
EVENT_HANDLE_LATENCY = Histogram(
    "lastmile_event_handle_duration_seconds",
    "Time to handle one event",
    ["service", "topic"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "lastmile_consumer_lag_messages", "Records behind the partition's end", ["service", "topic", "partition"]
)
OUTBOX_PUBLISHED = Counter(
    "lastmile_events_produced_total", "Events published from the outbox", ["service", "topic"]
)
OUTBOX_BACKLOG = Gauge("lastmile_outbox_backlog_events", "Outbox rows not yet published", ["service"])
READY = Gauge("lastmile_ready", "1 when the service's database and bus answer", ["service"])


class _ServiceView(Collector):
    def __init__(self, service: str) -> None:
        self.service = service
        self.prefix = "lastmile_" + service.replace("-", "_") + "_"

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if not family.name.startswith("lastmile_") or family.name.startswith(self.prefix):
                yield family
                continue
            samples = [s for s in family.samples if s.labels.get("service") == self.service]
            if samples:
                view = Metric(family.name, family.documentation, family.type, family.unit)
                view.samples = samples
                yield view


def render(service: str) -> tuple[bytes, str]:
    """The exposition body and content type of one service's metrics."""
    return generate_latest(_ServiceView(service)), CONTENT_TYPE_LATEST


def label_values(values: Iterable[str]) -> list[str]:
    return [v if v else "none" for v in values]
