"""Road-network matrices from OSRM (`/table`) and Valhalla (`/sources_to_targets`), against a local server that
speaks their documented formats; assembled block by block, unreachable pairs kept far, each matrix cached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lastmile.planner.travel import (
    UNREACHABLE,
    CachedTravelTimes,
    MatrixUnavailable,
    OsrmTravelTimes,
    ValhallaTravelTimes,
)

POINTS = [(52.50, 13.30), (52.51, 13.35), (52.52, 13.40), (52.53, 13.45), (52.54, 13.50)]
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)
NO_ROAD = ((52.54, 13.50), (52.50, 13.30))  # the fake has no road from the last point to the first


def seconds(a: tuple[float, float], b: tuple[float, float]) -> float:
    return abs(a[0] - b[0]) * 100_000 + abs(a[1] - b[1]) * 50_000 + 0.4


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return seconds(a, b) * 9


def fake_road_server(requests: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/table/v1/{profile}/{coordinates}")
    async def table(profile: str, coordinates: str, sources: str, destinations: str, annotations: str) -> Any:
        requests.append(f"osrm {profile}")
        if profile not in ("driving", "cycling"):
            return JSONResponse({"code": "InvalidOptions", "message": "profile"}, status_code=400)
        points = [tuple(float(x) for x in c.split(","))[::-1] for c in coordinates.split(";")]
        src = [points[int(i)] for i in sources.split(";")]
        dst = [points[int(i)] for i in destinations.split(";")]
        assert annotations == "duration,distance"
        durations = [[None if (a, b) == NO_ROAD else seconds(a, b) for b in dst] for a in src]
        distances = [[None if (a, b) == NO_ROAD else metres(a, b) for b in dst] for a in src]
        return {"code": "Ok", "durations": durations, "distances": distances}

    @app.post("/sources_to_targets")
    async def sources_to_targets(request: Request) -> Any:
        body = await request.json()
        requests.append(f"valhalla {body['costing']}")
        src = [(p["lat"], p["lon"]) for p in body["sources"]]
        dst = [(p["lat"], p["lon"]) for p in body["targets"]]
        rows = [
            [
                {"from_index": i, "to_index": j, "time": None, "distance": None}
                if (a, b) == NO_ROAD
                else {"from_index": i, "to_index": j, "time": seconds(a, b), "distance": metres(a, b) / 1000}
                for j, b in enumerate(dst)
            ]
            for i, a in enumerate(src)
        ]
        return {"sources_to_targets": rows, "units": "kilometers"}

    return app


@pytest.fixture
async def road_server(free_port: Callable[[], int]) -> AsyncIterator[tuple[str, list[str]]]:
    requests: list[str] = []
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake_road_server(requests), host="127.0.0.1", port=port, log_level="error")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}", requests
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


def expected(fn: Callable[[Any, Any], float]) -> list[list[int]]:
    return [[UNREACHABLE if (a, b) == NO_ROAD else round(fn(a, b)) for b in POINTS] for a in POINTS]


async def test_osrm_table_in_blocks(road_server: tuple[str, list[str]]) -> None:
    url, requests = road_server
    osrm = OsrmTravelTimes(url, {"van": "driving"}, block=2)
    try:
        matrix = await osrm.matrix(POINTS, "van", AT)
    finally:
        await osrm.close()
    assert matrix.durations.tolist() == expected(seconds)
    assert matrix.distances.tolist() == expected(metres)
    assert requests == ["osrm driving"] * 9  # 3 × 3 blocks of at most 2 × 2


async def test_valhalla_sources_to_targets_in_blocks(road_server: tuple[str, list[str]]) -> None:
    url, requests = road_server
    valhalla = ValhallaTravelTimes(url, {"cargo_bike": "bicycle"}, block=3)
    try:
        matrix = await valhalla.matrix(POINTS, "cargo_bike", AT)
    finally:
        await valhalla.close()
    assert matrix.durations.tolist() == expected(seconds)
    assert matrix.distances.tolist() == expected(metres)
    assert requests == ["valhalla bicycle"] * 4


async def test_each_matrix_is_computed_once(road_server: tuple[str, list[str]]) -> None:
    url, requests = road_server
    cached = CachedTravelTimes(OsrmTravelTimes(url, {"van": "driving"}))
    try:
        first = await cached.matrix(POINTS, "van", AT)
        again = await cached.matrix(list(POINTS), "van", AT)
        await cached.matrix(POINTS[:3], "van", AT)
    finally:
        await cached.close()
    assert again is first
    assert requests == ["osrm driving", "osrm driving"]


async def test_a_server_error_is_an_unavailable_matrix(road_server: tuple[str, list[str]]) -> None:
    url, _ = road_server
    osrm = OsrmTravelTimes(url, {"van": "flying"})
    try:
        with pytest.raises(MatrixUnavailable):
            await osrm.matrix(POINTS, "van", AT)
    finally:
        await osrm.close()
