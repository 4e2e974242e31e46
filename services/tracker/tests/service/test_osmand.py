"""The OsmAnd listener on its own port: what a phone running Traccar Client gets back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lastmile.common.testing import eventually


def params(tracker: Any, seconds_ago: float = 0, **more: str) -> dict[str, str]:
    at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return {
        "id": tracker.device["id"],
        "key": tracker.device["device_key"],
        "lat": "48.1",
        "lon": "11.5",
        "timestamp": str(int(at.timestamp())),
        **more,
    }


async def test_a_query_report_is_stored_and_published(tracker: Any) -> None:
    async with httpx.AsyncClient(base_url=tracker.osmand_url) as phone:
        reply = await phone.get("/", params=params(tracker, speed="20", bearing="45"))
        assert (reply.status_code, reply.text) == (200, "")
    located = await eventually(lambda: tracker.bus.envelopes("locations.v1"))
    assert located[0].data["speed_mps"] == 20 * 1852 / 3600
    assert located[0].data["device_id"] == tracker.device["id"]


async def test_a_form_report_on_any_path_with_the_key_in_a_header(tracker: Any) -> None:
    form = params(tracker)
    key = form.pop("key")
    async with httpx.AsyncClient(base_url=tracker.osmand_url) as phone:
        reply = await phone.post("/anything", data=form, headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 200
    await eventually(lambda: tracker.bus.envelopes("locations.v1"))


async def test_unknown_keys_and_mismatched_ids_are_refused(tracker: Any) -> None:
    other = await tracker.add_device("veh_2")
    async with httpx.AsyncClient(base_url=tracker.osmand_url) as phone:
        assert (await phone.get("/", params=params(tracker, key="lm_dev_nope"))).status_code == 401
        assert (await phone.get("/", params=params(tracker, key=""))).status_code == 401
        assert (await phone.get("/", params=params(tracker, id=other["id"]))).status_code == 401
        assert (
            await phone.post("/", content=b"{not json", headers={"content-type": "application/json"})
        ).status_code == 400


async def test_a_refused_position_is_acknowledged_so_the_phone_moves_on(tracker: Any) -> None:
    async with httpx.AsyncClient(base_url=tracker.osmand_url) as phone:
        reply = await phone.get("/", params=params(tracker, seconds_ago=3 * 86400))
        assert reply.status_code == 200
        metrics = (await tracker.client.get("/metrics")).text
    assert 'lastmile_tracker_pings_rejected_total{reason="too_old"}' in metrics
    assert tracker.bus.envelopes("locations.v1") == []


async def test_too_many_reports_are_slowed_down(start_tracker: Any) -> None:
    async with (
        start_tracker(device_rate_per_s=1, device_burst=2) as tracker,
        httpx.AsyncClient(base_url=tracker.osmand_url) as phone,
    ):
        codes = [
            (await phone.get("/", params=params(tracker, seconds_ago=10 - k))).status_code for k in range(4)
        ]
        assert codes[:2] == [200, 200]
        assert 429 in codes[2:]


async def test_a_key_revoked_elsewhere_stops_working_within_seconds(start_tracker: Any) -> None:
    import sqlalchemy as sa

    from lastmile.tracker.store import DeviceRow

    async with (
        start_tracker(device_cache_s=0.5) as tracker,
        httpx.AsyncClient(base_url=tracker.osmand_url) as phone,
    ):
        assert (await phone.get("/", params=params(tracker, seconds_ago=30))).status_code == 200  # now cached
        async with (
            tracker.app.state.runtime.db.transaction() as session
        ):  # as another replica would revoke it
            revoked = sa.update(DeviceRow).where(DeviceRow.id == tracker.device["id"])
            await session.execute(revoked.values(revoked_at=datetime.now(UTC)))
        seconds = iter(range(29, 0, -1))

        async def refused() -> bool:
            reply = await phone.get("/", params=params(tracker, seconds_ago=next(seconds)))
            return reply.status_code == 401

        await eventually(refused, timeout=5, interval=0.2)


async def test_other_methods_and_oversized_bodies_are_refused(tracker: Any) -> None:
    async with httpx.AsyncClient(base_url=tracker.osmand_url) as phone:
        refused = await phone.delete("/")
        assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD, POST, PUT")
        large = await phone.post("/", content=b"x" * (256 * 1024 + 1))
        assert large.status_code == 413
        assert large.json()["code"] == "payload-too-large"
    assert tracker.bus.envelopes("locations.v1") == []
