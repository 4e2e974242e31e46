"""Settings every service shares, read once from `LASTMILE_*` environment variables and passed down."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lastmile.common.clock import Clock

WEAK_SECRETS = {"", "changeme", "secret", "ops", "token", "password"}


class CommonSettings(BaseSettings):
    """A service subclasses this with its own fields and defaults (name, port, database)."""

    model_config = SettingsConfigDict(env_prefix="LASTMILE_", extra="ignore", frozen=True)

    service: str = "lastmile"
    host: str = "127.0.0.1"
    port: int = 8000

    database_url: str = "sqlite+aiosqlite:///var/lastmile.db"
    database_pool_size: int = 10
    database_echo: bool = False
    database_pre_ping: bool = True  # test each pooled connection before use (see db.Database)

    bus: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_topic_prefix: str = ""
    kafka_partitions: int = 6
    kafka_replication_factor: int = 1
    kafka_create_topics: bool = True
    # Client timeouts: how soon a dead or paused broker is noticed (the fault tests shorten them).
    kafka_request_timeout_ms: int = Field(default=15000, ge=1000)
    kafka_session_timeout_ms: int = Field(default=10000, ge=6000)  # the broker's group.min.session.timeout.ms
    kafka_heartbeat_interval_ms: int = Field(default=3000, ge=100)
    kafka_publish_timeout_s: float = Field(default=60.0, gt=0)
    # Consumers' fetches: answered once they hold this many bytes, or have waited this long.
    kafka_fetch_min_bytes: int = Field(default=1, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=0)
    consumer_max_attempts: int = Field(default=5, ge=1)
    # Records of one partition handled in one transaction (1: one transaction per record).
    consumer_batch: int = Field(default=1, ge=1)
    # Kafka, with consumer_batch > 1: batches take records of every partition of a fetch (fewer, fuller
    # transactions), and a fetch smaller than a batch waits this long for more (see bus.Subscription).
    consumer_across_partitions: bool = False
    consumer_linger_seconds: float = Field(default=0.0, ge=0)
    max_event_bytes: int = 512 * 1024

    ops_token: SecretStr
    public_url: str = "http://127.0.0.1:8003"
    max_body_bytes: int = 1024 * 1024

    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"

    clock_speed: float = Field(default=1.0, gt=0)
    clock_epoch: datetime | None = None
    clock_anchor: float | None = None  # real Unix time at which the clock reads clock_epoch

    outbox_poll_seconds: float = 0.5
    # the outbox relay starts a round at most this often under a stream of commits (see OutboxRelay)
    outbox_min_round_seconds: float = 0.0
    outbox_batch: int = 500

    @field_validator("ops_token")
    @classmethod
    def _no_default_secret(cls, value: SecretStr) -> SecretStr:
        # A guessable ops token is as good as none: refuse to start (the template's non-default-secret rule).
        if value.get_secret_value().lower() in WEAK_SECRETS or len(value.get_secret_value()) < 16:
            raise ValueError("LASTMILE_OPS_TOKEN must be set to a secret of at least 16 characters")
        return value

    def clock(self) -> Clock:
        return Clock(speed=self.clock_speed, epoch=self.clock_epoch, anchor=self.clock_anchor)
