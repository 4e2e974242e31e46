"""Tracker's settings (`LASTMILE_*`)."""

from __future__ import annotations

from pydantic import Field

from lastmile.common.settings import CommonSettings
from lastmile.tracker.domain import Limits
from lastmile.tracker.domain_eta import EtaConfig


class TrackerSettings(CommonSettings):
    service: str = "tracker"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///var/tracker.db"
    max_body_bytes: int = 3 * 1024 * 1024  # a completion may carry a photo and a signature
    outbox_batch: int = 5000  # a LocationReported per ping: the relay hands Kafka large batches
    # Between cycles the relay waits for a commit's wake-up or this poll, whichever comes first: positions take
    # two outbox hops to become an EtaChanged, and 0.5 s polls made the latency's tail (when the wake-up was
    # cleared after a cycle, not before). Idle, the shorter poll costs a cheap query every 50 ms.
    outbox_poll_seconds: float = 0.05
    consumer_batch: int = 500  # a fetch's positions reach the ETA engine together (one transaction)
    # ... of every partition in the fetch, not a transaction per partition: at 400 positions a second a 50 ms
    # fetch holds a dozen per partition, and six concurrent transactions cost six times the fixed part.
    consumer_across_partitions: bool = True
    # Positions come by the hundred a second, a few hundred bytes each: a fetch waits up to 50 ms for 64 KiB,
    # so that each partition's transaction takes a batch of them rather than one or two.
    kafka_fetch_min_bytes: int = 64 * 1024
    kafka_fetch_max_wait_ms: int = 50

    # Hundreds of transactions a second: a pre-ping (three round trips) before each cost more than any of them.
    # Every caller handles a connection lost meanwhile as transient (503 and retry, redelivery, relay retry).
    database_pre_ping: bool = False

    # The OsmAnd protocol (Traccar Client and other phone apps) on a port of its own, as Traccar serves it;
    # 0 lets the system pick a free port, -1 turns the listener off.
    osmand_port: int = 5055
    osmand_host: str | None = None  # defaults to `host`

    # Ingest
    max_future_skew_s: float = 120.0
    max_ping_age_s: float = 24 * 3600.0
    max_batch: int = Field(default=1000, ge=1)
    max_speed_mps: float = 70.0
    ingest_flush_pings: int = Field(default=5000, ge=1)
    # A flush smaller than ingest_flush_pings waits until its oldest request is this old: fewer, larger
    # transactions for single pings (OsmAnd) at the cost of a few milliseconds on their acknowledgement.
    ingest_linger_ms: float = Field(default=5.0, ge=0)
    device_cache_s: float = 5.0  # a key revoked on another replica works about this long (+1 s) here
    device_rate_per_s: float = 50.0
    device_burst: float = 200.0
    position_retention_s: float = 7 * 24 * 3600.0
    purge_interval_s: float = 600.0
    active_vehicle_s: float = 600.0

    # ETA engine
    arrival_radius_m: float = 50.0
    departure_radius_m: float = 100.0
    dwell_s: float = 30.0
    eta_change_threshold_s: float = 120.0
    eta_change_fraction: float = Field(
        default=0.1, ge=0, le=1
    )  # of the time left: far-off ETAs change less often
    arriving_soon_s: float = 600.0
    delay_threshold_s: float = 900.0
    delay_horizon_s: float = Field(default=7200.0, ge=0)  # delays told for stops due within this long

    # Customer tracking page
    tracking_map_stops: int = (
        3  # the vehicle is shown when at most this many stops come before the customer's
    )
    tracking_grace_s: float = 3 * 24 * 3600.0  # how long a link works after delivery (or cancellation)
    tracking_tiles_url: str | None = (
        None  # e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png; none: offline
    )
    tracking_tiles_attribution: str = "© OpenStreetMap contributors"
    stream_poll_s: float = 5.0  # how often live streams look for changes made by other replicas
    proof_image_max_bytes: int = 1024 * 1024

    def limits(self) -> Limits:
        return Limits(
            max_future_skew_s=self.max_future_skew_s,
            max_age_s=self.max_ping_age_s,
            max_speed_mps=self.max_speed_mps,
        )

    def eta_config(self) -> EtaConfig:
        return EtaConfig(
            arrival_radius_m=self.arrival_radius_m,
            departure_radius_m=self.departure_radius_m,
            dwell_s=self.dwell_s,
            change_threshold_s=self.eta_change_threshold_s,
            change_fraction=self.eta_change_fraction,
            arriving_soon_s=self.arriving_soon_s,
            delay_threshold_s=self.delay_threshold_s,
            delay_horizon_s=self.delay_horizon_s,
        )
