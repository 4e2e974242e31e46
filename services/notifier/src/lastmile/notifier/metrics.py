"""The notifier's business metrics (`lastmile_notifier_*`), shared by the policy's handlers and the senders."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from lastmile.common.metrics import LATENCY_BUCKETS

MESSAGES = Counter(
    "lastmile_notifier_messages_total",
    "Customer messages by channel, kind and outcome (sent, failed, retried, held, dropped, suppressed)",
    ["channel", "kind", "outcome"],
)
DROPPED = Counter(
    "lastmile_notifier_dropped_total",
    "Messages the policy dropped because they came too late to matter, by kind and reason",
    ["kind", "reason"],
)
PROVIDER_LATENCY = Histogram(
    "lastmile_notifier_provider_latency_seconds",
    "Time a provider takes to answer one send (SMS, email, file, webhook)",
    ["channel", "outcome"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_STATUS = Counter(
    "lastmile_notifier_provider_status_total", "Delivery states reported by provider callbacks", ["status"]
)
OPT_OUTS = Counter(
    "lastmile_notifier_opt_outs_total", "Opt-outs recorded, by channel and source", ["channel", "source"]
)
WEBHOOKS = Counter(
    "lastmile_notifier_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (delivered, retried, failed, disabled)",
    ["outcome"],
)
