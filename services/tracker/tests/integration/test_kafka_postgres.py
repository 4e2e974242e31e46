"""The tracker on the real Kafka broker and PostgreSQL: a vehicle's pings are processed in order, and a tracker
killed mid-stream loses no ping it acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lastmile.common.bus import OutgoingRecord
from lastmile.common.testing import TEST_OPS_TOKEN, app_client, eventually, ops_headers
from lastmile.sim.distributed import Stack
from lastmile.tracker.app import create_app
from lastmile.tracker.settings import TrackerSettings

pytestmark = pytest.mark.integration
START = (48.10, 11.50)
KM = 1 / 111.2


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record of a topic, all partitions, from the beginning (no consumer group)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                found += records
    finally:
        await consumer.stop()
    return found


@contextlib.asynccontextmanager
async def tracker_on_kafka(kafka: Any, database_url: str) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = TrackerSettings(
        bus="kafka",
        kafka_bootstrap_servers=kafka.bootstrap,
        kafka_topic_prefix=kafka.prefix,
        kafka_partitions=3,
        database_url=database_url,
        ops_token=TEST_OPS_TOKEN,
        osmand_port=-1,
        device_rate_per_s=10_000,
        device_burst=10_000,
    )
    app = create_app(settings)
    async with app_client(app) as client:
        await eventually(lambda: _ready(client), timeout=60, interval=0.5)
        yield app, client


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_pings_for_one_vehicle_are_processed_in_order(
    kafka: Any, postgres: Any, make_route: Any
) -> None:
    async with tracker_on_kafka(kafka, await postgres("tracker")) as (app, client):
        device = (
            await client.post("/v1/devices", json={"vehicle_id": "veh_1"}, headers=ops_headers())
        ).json()
        driver = {"Authorization": f"Bearer {device['device_key']}"}
        t0 = datetime.now(UTC) - timedelta(minutes=50)
        stops = [(f"o{i}", START[0] + (i + 1) * KM, START[1]) for i in range(3)]
        route = make_route("veh_1", stops, start=START, start_at=t0, leg_s=300)
        await app.state.runtime.bus.publish(
            [OutgoingRecord("routes.v1", b"veh_1", route.envelope("planner").to_bytes())]
        )
        pings = _drive(t0, stops)
        for k in range(0, len(pings), 25):  # as a phone uploads: batches, one after the other
            reply = await client.post("/v1/pings", json={"pings": pings[k : k + 25]}, headers=driver)
            assert reply.status_code == 202
            assert set(reply.json()) == {"ok"}
        deliveries = kafka.prefix + "deliveries.v1"

        async def arrivals() -> dict[str, datetime] | None:
            records = await read_topic(kafka.bootstrap, deliveries, timeout=2)
            found = [json.loads(r.value) for r in records]
            at = {
                e["data"]["order_id"]: datetime.fromisoformat(e["data"]["at"])
                for e in found
                if e["type"] == "lastmile.delivery.arrived"
            }
            return at if len(at) == 3 else None

        at = await eventually(arrivals, timeout=60, interval=1)
        assert at["o0"] < at["o1"] < at["o2"]  # deliveries.v1 is keyed by order: compare times, not offsets
        for i in range(3):  # where the drive reached each stop: the first ping inside its radius
            reached = datetime.fromisoformat(pings[48 * i + 29]["recorded_at"])
            assert reached - timedelta(seconds=20) <= at[f"o{i}"] <= reached
        located = await read_topic(kafka.bootstrap, kafka.prefix + "locations.v1")
        times = [json.loads(r.value)["data"]["recorded_at"] for r in located if r.key == b"veh_1"]
        assert len(times) == len(pings)
        assert times == sorted(times, key=datetime.fromisoformat)  # one partition, in the order acknowledged
        async with app.state.runtime.db.read() as session:
            from lastmile.tracker.store import TrackerStore

            store = TrackerStore(session)
            [current] = (await store.current_routes(["veh_1"])).values()
            progress = await store.progress(current.id)
        assert progress is not None
        assert datetime.fromtimestamp(progress["fix"][2], UTC) == datetime.fromisoformat(
            pings[-1]["recorded_at"]
        )


def _drive(t0: datetime, stops: list[tuple[str, float, float]]) -> list[dict[str, Any]]:
    """Every 10 s: drive a leg in 5 minutes, stand 3 minutes at the stop."""
    pings, at, here = [], t0, START
    for _, lat, lon in stops:
        for k in range(1, 31):
            f = k / 30
            at += timedelta(seconds=10)
            pings.append(_ping(at, here[0] + f * (lat - here[0]), here[1] + f * (lon - here[1])))
        for _ in range(18):
            at += timedelta(seconds=10)
            pings.append(_ping(at, lat, lon))
        here = (lat, lon)
    return pings


def _ping(at: datetime, lat: float, lon: float) -> dict[str, Any]:
    return {"lat": round(lat, 7), "lon": round(lon, 7), "recorded_at": at.isoformat(), "accuracy_m": 5}


async def test_a_tracker_killed_mid_stream_loses_no_acknowledged_ping(
    kafka: Any, postgres: Any, free_port: Any, tmp_path: Path
) -> None:
    stack = Stack(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=kafka.prefix,
        databases={"tracker": await postgres("tracker")},
        ports={"tracker": free_port()},
        ops_token=TEST_OPS_TOKEN,
        logs=tmp_path / "logs",
        osmand_port=free_port(),
        extra_env={"LASTMILE_DEVICE_RATE_PER_S": "10000", "LASTMILE_DEVICE_BURST": "10000"},
    )
    stack.start("tracker")
    try:
        await stack.wait_ready("tracker", timeout=90)
        async with httpx.AsyncClient(base_url=stack.url("tracker"), timeout=10) as http:
            device = (
                await http.post("/v1/devices", json={"vehicle_id": "veh_k"}, headers=ops_headers())
            ).json()
            acked = await _send_while(http, device, stack)
        assert len(acked) > 1000  # before the kill and after the restart

        async def stored() -> set[str]:
            async with httpx.AsyncClient(base_url=stack.url("tracker"), timeout=10) as http:
                since = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
                reply = await http.get(
                    "/v1/vehicles/veh_k/track",
                    params={"since": since, "limit": 10_000},
                    headers=ops_headers(),
                )
                return {p["recorded_at"] for p in reply.json()}

        missing = acked - await stored()
        assert not missing, f"{len(missing)} acknowledged pings lost from the store"

        async def published() -> set[str] | None:
            records = await read_topic(kafka.bootstrap, kafka.prefix + "locations.v1", timeout=3)
            seen = {_utc(json.loads(r.value)["data"]["recorded_at"]) for r in records}
            return seen if acked <= seen else None

        assert await eventually(published, timeout=60, interval=1)
    finally:
        stack.stop_all()


async def _send_while(http: httpx.AsyncClient, device: dict[str, Any], stack: Stack) -> set[str]:
    """A phone sending batches of pings back to back while the tracker is killed (SIGKILL, mid-request) and
    restarted. Returns the pings whose batch was acknowledged (202)."""
    driver = {"Authorization": f"Bearer {device['device_key']}"}
    acked: set[str] = set()
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    done = asyncio.Event()

    async def phone() -> None:
        sent = 0
        while not done.is_set():
            batch = [
                _ping(t0 + timedelta(milliseconds=200 * (sent + k)), 48.1, 11.5 + (sent + k) * 1e-6)
                for k in range(20)
            ]
            sent += 20
            try:
                reply = await http.post("/v1/pings", json={"pings": batch}, headers=driver)
                if reply.status_code == 202:
                    acked.update(_utc(p["recorded_at"]) for p in batch)
            except httpx.HTTPError:
                await asyncio.sleep(
                    0.1
                )  # not acknowledged: a phone would send these again; they need not be kept

    sender = asyncio.create_task(phone())
    await eventually(lambda: len(acked) >= 600, timeout=60)
    process = stack.processes["tracker"]
    stack.kill("tracker", signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL
    before = len(acked)
    stack.start("tracker")
    await stack.wait_ready("tracker", timeout=90)
    await eventually(lambda: len(acked) >= before + 400, timeout=60)
    done.set()
    await sender
    return acked


def _utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()
