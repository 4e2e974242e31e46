"""Real GPS traces (barefoot's Munich car, ../shared/data/gps) replayed through the OsmAnd listener, as Traccar
Client would send them: arrivals where the car stops, the real 470 m jump flagged, nothing upset by real noise."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from lastmile.common.testing import eventually, ops_headers

KNOT = 1852 / 3600
# Where the 1 Hz drive stands still for more than half a minute (index of the first still point), and one
# place it drives through at 100 km/h.
STILL_1HZ = {"o1": 146, "o2": 585, "o4": 1035}
DRIVEN_THROUGH = ("o3", 800)
JUMP = 619  # 07:04:27: 470 m from the point a second before


def meters(a: Any, b: Any) -> float:
    dlat = math.radians(b.lat - a.lat)
    dlon = math.radians(b.lon - a.lon) * math.cos(math.radians(a.lat))
    return 6_371_000 * math.hypot(dlat, dlon)


def shift(trace: list[Any]) -> timedelta:
    """Replayed so that the drive ends now (the tracker refuses pings older than a day)."""
    return timedelta(seconds=int((datetime.now(UTC) - timedelta(seconds=5) - trace[-1].at).total_seconds()))


async def test_the_one_hertz_drive_arrives_where_it_stops_and_the_jump_is_flagged(
    start_tracker: Any, gps_trace: Any, make_route: Any
) -> None:
    trace = gps_trace("barefoot-munich-car-1hz.json")
    offset = shift(trace)
    async with start_tracker(device_rate_per_s=10_000, device_burst=10_000) as tracker:
        before = await _metrics(tracker)
        points = {**STILL_1HZ, DRIVEN_THROUGH[0]: DRIVEN_THROUGH[1]}
        stops = [
            (order, trace[i].lat, trace[i].lon) for order, i in sorted(points.items(), key=lambda kv: kv[1])
        ]
        first = trace[0]
        route = make_route(
            "veh_1", stops, start=(first.lat, first.lon), start_at=first.at + offset, leg_s=240
        )
        await tracker.publish(route)
        device = tracker.device
        async with httpx.AsyncClient(base_url=tracker.osmand_url, timeout=20) as phone:
            for k, fix in enumerate(trace):
                prev = trace[k - 1] if k else fix
                seconds = max(1.0, (fix.at - prev.at).total_seconds())
                params = {
                    "id": device["id"],
                    "key": device["device_key"],
                    "lat": f"{fix.lat:.7f}",
                    "lon": f"{fix.lon:.7f}",
                    "timestamp": str(int((fix.at + offset).timestamp())),
                    "accuracy": "5",
                    "batt": "80",
                }
                speed = meters(prev, fix) / seconds
                if speed < 70:  # a phone's Doppler speed; across the jump it would not read 470 m/s
                    params["speed"] = f"{speed / KNOT:.2f}"
                reply = await phone.get("/", params=params)
                assert reply.status_code == 200, (k, reply.text)
        await tracker.settle()
        arrived = await eventually(
            lambda: (
                len(tracker.events("lastmile.delivery.arrived")) >= 3
                and tracker.events("lastmile.delivery.arrived")
            )
        )
        at = {e.data["order_id"]: datetime.fromisoformat(e.data["at"]) for e in arrived}
        assert set(at) == set(STILL_1HZ), (
            "arrived exactly where the car stood still, not where it drove through"
        )
        for order, index in STILL_1HZ.items():
            stood = trace[index].at + offset
            assert timedelta(seconds=-30) <= at[order] - stood <= timedelta(seconds=5), order
        since = (trace[JUMP - 3].at + offset).isoformat()
        track = await tracker.client.get(
            "/v1/vehicles/veh_1/track", params={"since": since, "limit": 6}, headers=ops_headers()
        )
        flagged = {p["recorded_at"]: p["suspect"] for p in track.json()}
        jump_at = (trace[JUMP].at + offset).astimezone(UTC).isoformat()
        before_at = (trace[JUMP - 1].at + offset).astimezone(UTC).isoformat()
        assert flagged[jump_at] is True
        assert flagged[before_at] is False
        after = await _metrics(tracker)
        accepted = 'lastmile_tracker_pings_accepted_total{door="osmand"}'
        assert after[accepted] - before[accepted] == len(trace)  # every real, noisy ping was taken
        suspect = 'lastmile_tracker_pings_flagged_total{flag="suspect"}'
        assert 1 <= after[suspect] - before[suspect] <= 3


async def test_the_fifteen_second_drive_through_the_json_form_arrives_where_it_stops(
    start_tracker: Any, gps_trace: Any, make_route: Any
) -> None:
    trace = gps_trace("barefoot-munich-car-15s.json")
    offset = shift(trace)
    async with start_tracker() as tracker:
        before = await _metrics(tracker)
        stops = [("s1", trace[29].lat, trace[29].lon), ("s2", trace[70].lat, trace[70].lon)]
        first = trace[0]
        await tracker.publish(
            make_route("veh_1", stops, start=(first.lat, first.lon), start_at=first.at + offset)
        )
        url = tracker.osmand_url + f"?key={tracker.device['device_key']}"
        async with httpx.AsyncClient(timeout=20) as phone:
            for fix in trace:
                body = {
                    "location": {
                        "timestamp": (fix.at + offset).astimezone(UTC).isoformat().replace("+00:00", "Z"),
                        "coords": {
                            "latitude": fix.lat,
                            "longitude": fix.lon,
                            "accuracy": 10,
                            "speed": -1,
                            "heading": -1,
                        },
                        "is_moving": True,
                        "battery": {"level": 0.5, "is_charging": False},
                    },
                    "device_id": tracker.device["id"],
                }
                reply = await phone.post(url, json=body)
                assert reply.status_code == 200, reply.text
        await tracker.settle()
        arrived = await eventually(
            lambda: (
                len(tracker.events("lastmile.delivery.arrived")) >= 2
                and tracker.events("lastmile.delivery.arrived")
            )
        )
        assert sorted(e.data["order_id"] for e in arrived) == ["s1", "s2"]
        after = await _metrics(tracker)
        suspect = 'lastmile_tracker_pings_flagged_total{flag="suspect"}'
        assert after[suspect] == before[suspect]  # the sparse drive's 600 m in 15 s is fast, not impossible


async def _metrics(tracker: Any) -> defaultdict[str, float]:
    """Counters are process-wide: tests compare before and after."""
    found: defaultdict[str, float] = defaultdict(float)
    for line in (await tracker.client.get("/metrics")).text.splitlines():
        if line.startswith("lastmile_tracker_pings"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found
