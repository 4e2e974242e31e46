"""Notifier's settings (`LASTMILE_*`): channels and providers, the message policy, sending and webhooks."""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from lastmile.common.settings import CommonSettings

# Standard Webhooks' suggested schedule, stretched past a day: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
WEBHOOK_SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 36000)


class NotifierSettings(CommonSettings):
    service: str = "notifier"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///var/notifier.db"
    # Many delivery events in one transaction: the per-event database round trips are most of the cost.
    consumer_batch: int = Field(default=100, ge=1)
    # Delivery events are keyed by order over many partitions: a fetch holds a few per partition, so the batches
    # take every partition's records, and wait a little for more (a fraction of the one-second latency goal).
    consumer_across_partitions: bool = True
    consumer_linger_seconds: float = Field(default=0.05, ge=0)
    # Many small transactions (claims, answers, the log): a pre-ping (three round trips) before each cost more
    # than most of them; the pool's check at checkout and callers' retries cover a dropped connection.
    database_pre_ping: bool = False
    # Where this service is reached from outside: provider callbacks and unsubscribe links point here.
    notifier_url: str | None = None

    # Channels: the file outbox by default (the embedded mode), real providers by setting.
    sms_channel: Literal["file", "twilio"] = "file"
    email_channel: Literal["file", "smtp"] = "file"
    file_outbox_dir: str = "var/outbox"

    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""
    twilio_validate_signatures: bool = True

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_ca_file: str | None = None  # CA bundle to trust for the server's certificate (default: the system's)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "Lastmile <notifications@lastmile.invalid>"
    smtp_connections: int = Field(default=16, ge=1)

    # Signs one-click unsubscribe links; derived from the ops token when unset (set it to rotate separately).
    unsubscribe_secret: SecretStr | None = None

    # Policy
    default_timezone: str = "UTC"
    quiet_hours_start: str = "21:00"
    quiet_hours_end: str = "08:00"
    eta_threshold_minutes: int = Field(default=15, ge=1)
    eta_messages_cap: int = Field(default=3, ge=0)
    stale_after_minutes: int = Field(default=120, ge=1)

    # Sending
    send_batch: int = Field(default=200, ge=1)
    # Calls in flight per channel; claims take at most what the pools have room for, so the sizes also bound
    # how many messages one claim takes (a claim is a transaction: fewer, fuller ones cost less per message).
    # A claimed message waits at most (pool / connections) provider timeouts: keep that under the lease.
    send_concurrency_sms: int = Field(default=64, ge=1)
    send_concurrency_email: int = Field(default=32, ge=1)
    send_claim_linger_seconds: float = Field(default=0.02, ge=0)
    send_record_linger_seconds: float = Field(default=0.05, ge=0)
    send_max_attempts: int = Field(default=6, ge=1)
    send_retry_base_seconds: float = Field(default=2.0, gt=0)
    send_retry_max_seconds: float = Field(default=600.0, gt=0)
    send_lease_seconds: float = Field(default=60.0, gt=0)
    provider_timeout_seconds: float = Field(default=15.0, gt=0)

    # Merchant webhooks
    webhooks_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_schedule_seconds: tuple[float, ...] = WEBHOOK_SCHEDULE_S
    webhook_disable_after_hours: float = Field(default=24.0, gt=0)
    webhook_disable_min_failures: int = Field(default=10, ge=1)
    webhook_concurrency: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _providers_configured(self) -> NotifierSettings:
        if self.sms_channel == "twilio":
            missing = [
                name
                for name, value in (
                    ("LASTMILE_TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("LASTMILE_TWILIO_AUTH_TOKEN", self.twilio_auth_token.get_secret_value()),
                    ("LASTMILE_TWILIO_FROM", self.twilio_from),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"LASTMILE_SMS_CHANNEL=twilio needs {', '.join(missing)}")
        if self.unsubscribe_secret is not None and len(self.unsubscribe_secret.get_secret_value()) < 16:
            raise ValueError("LASTMILE_UNSUBSCRIBE_SECRET must be at least 16 characters")
        return self

    @property
    def base_url(self) -> str:
        return (self.notifier_url or f"http://{self.host}:{self.port}").rstrip("/")

    def unsubscribe_key(self) -> bytes:
        if self.unsubscribe_secret is not None:
            return self.unsubscribe_secret.get_secret_value().encode()
        ops = self.ops_token.get_secret_value().encode()
        return hmac.new(ops, b"lastmile-notifier-unsubscribe", hashlib.sha256).digest()
