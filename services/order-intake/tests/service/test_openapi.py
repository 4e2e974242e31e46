"""The OpenAPI document: an example for every route, and schemathesis (pinned) fuzzing the service against it:
no answer is a 5xx, every answer matches the document."""

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from lastmile.common.bus import InMemoryBus
from lastmile.common.serve import uvicorn_config
from lastmile.common.testing import TEST_OPS_TOKEN, eventually, ops_headers, publish
from lastmile.order_intake.app import create_app
from lastmile.order_intake.settings import IntakeSettings


async def test_every_route_has_an_example(intake: Any) -> None:
    doc = (await intake.client.get("/openapi.json")).json()
    missing = []
    for path, methods in doc["paths"].items():
        if path in ("/healthz", "/readyz"):
            continue
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "requestBody" in op and not (body.get("examples") or body.get("example")):
                missing.append(f"{method.upper()} {path}: request")
            ok = [r for status, r in op["responses"].items() if status.startswith("2")]
            if not any(
                c.get("example") or c.get("examples") for r in ok for c in r.get("content", {}).values()
            ) and not any(status == "204" for status in op["responses"]):
                missing.append(f"{method.upper()} {path}: answer")
    assert not missing, missing


async def test_the_write_routes_document_the_idempotency_key(intake: Any) -> None:
    doc = (await intake.client.get("/openapi.json")).json()
    for path, method in (
        ("/v1/orders", "post"),
        ("/v1/orders/batch", "post"),
        ("/v1/orders/{order_id}", "patch"),
        ("/v1/orders/{order_id}/cancel", "post"),
    ):
        names = [p["name"] for p in doc["paths"][path][method].get("parameters", [])]
        assert "Idempotency-Key" in names, (method, path)


@contextlib.asynccontextmanager
async def served(tmp_path: Path, port: int) -> AsyncIterator[tuple[str, str]]:
    """The app on a real socket in this event loop, with a depot and a merchant; yields (url, merchant key)."""
    from lastmile.common import events as ev

    bus = InMemoryBus()
    await bus.start()
    settings = IntakeSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/fuzz.db",
        ops_token=TEST_OPS_TOKEN,
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
    )
    server = uvicorn.Server(uvicorn_config(create_app(settings, bus=bus), "127.0.0.1", port))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=30)
        depot = ev.DepotUpserted(
            depot_id="dep_berlin",
            name="Mitte",
            location=ev.GeoPoint(lat=52.52, lon=13.40),
            timezone="Europe/Berlin",
            service_radius_km=15,
        )
        await publish(bus, depot)
        import httpx

        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url) as http:
            merchant = (await http.post("/v1/merchants", json={"name": "Fuzz"}, headers=ops_headers())).json()
        yield url, merchant["api_key"]
    finally:
        server.should_exit = True
        await task
        await bus.stop()


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def schemathesis(url: str, token: str, *selection: str, max_time: int, cwd: Path) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{url}/openapi.json", "--checks", CHECKS,
        "-H", f"Authorization: Bearer {token}", "--max-examples", "30", "--max-time", str(max_time),
        "--seed", "7", "--workers", "1", "--request-timeout", "10", "--no-color", *selection,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        cwd=cwd,  # its cache of crashes goes there, not into the work tree
    )
    async with asyncio.timeout(max_time + 60):
        out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    tmp_path: Path, free_port: Any
) -> None:
    async with served(tmp_path, free_port()) as (url, key):
        merchant_code, merchant_out = await schemathesis(
            url, key, "--exclude-tag", "ops", max_time=35, cwd=tmp_path
        )
        ops_code, ops_out = await schemathesis(
            url, TEST_OPS_TOKEN, "--include-tag", "ops", max_time=10, cwd=tmp_path
        )
    assert merchant_code == 0, merchant_out[-6000:]
    assert ops_code == 0, ops_out[-6000:]
    assert "/v1/orders/batch" in merchant_out
    assert "/v1/merchants" in ops_out
