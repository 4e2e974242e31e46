"""Order intake's settings (`LASTMILE_*`)."""

from pydantic import Field

from lastmile.common.settings import CommonSettings


class IntakeSettings(CommonSettings):
    service: str = "order-intake"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///var/order-intake.db"
    tracking_base_url: str = "http://127.0.0.1:8003/track/"
    # Delivery events (several per order, and ETA changes) handled a hundred to a transaction, not one each.
    consumer_batch: int = Field(default=100, ge=1)
    # Events the outbox relay publishes per round. Batches of 1,000 orders keep the event loop busy, so each
    # of a round's awaits (read, publish, delete) waits its turn: rounds of 500 published ~1,400 events a second
    # while batches came in at ~6,000 orders a second.
    outbox_batch: int = Field(default=5000, ge=1)
    # A thousand single orders a second commit some 200 small groups: a relay round each (a read, a publish and
    # a delete, whatever the count) cost PostgreSQL as much CPU as the writes. Rounds at most every 10 ms; an
    # event reaches orders.v1 up to 10 ms later.
    outbox_min_round_seconds: float = 0.01
    max_body_bytes: int = 64 * 1024  # one order, or a change; the batch route has its own limit
    batch_max_body_bytes: int = 8 * 1024 * 1024  # 1,000 orders of up to ~8 KiB each
    # A revoked key still works on the other replicas for at most this long (at once on the one that revoked).
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    # A new or changed depot reaches the other replicas within this time (at once on the one that consumed it).
    depot_cache_seconds: float = Field(default=5.0, ge=0)
    rate_limit_per_second: float = Field(default=100.0, gt=0, description="requests per merchant")
    rate_limit_burst: float = Field(default=200.0, ge=1)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    # A thousand single orders a second: a pre-ping (three round trips) before each group commit cost more
    # than the commit's own statements. Every caller handles a connection lost meanwhile as transient (503 and
    # retry, redelivery, relay retry); a connection the server closed is dropped at checkout (db._drop_if_closed).
    database_pre_ping: bool = False
    # A group commit of fewer than 8 single creations waits this long for more: under load, fewer and larger
    # groups (the database work is per group); when idle, a request waits this much longer for its answer.
    group_commit_wait_ms: float = Field(default=2.0, ge=0)
