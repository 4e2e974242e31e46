"""The tracking page in headless Chromium (Debian's package, driven by Playwright): it shows the ETA and the
vehicle, it follows a new ping without a reload, and a wrong token gets the plain 404 page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lastmile.common.testing import chromium_page, eventually

DEST = (48.14, 11.58)


@pytest.fixture
async def browser_page(tmp_path: Path) -> AsyncIterator[Any]:
    async with chromium_page(tmp_path / "chromium-profile", {"width": 390, "height": 844}) as page:  # a phone
        yield page


async def ping(tracker: Any, lat: float, seconds_ago: float = 0) -> None:
    at = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    body = {"pings": [{"lat": lat, "lon": DEST[1], "recorded_at": at}]}
    assert (await tracker.client.post("/v1/pings", json=body, headers=tracker.driver)).status_code == 202


async def test_the_page_shows_the_eta_and_the_vehicle_and_follows_a_new_ping(
    live_tracker: Any, browser_page: Any, make_order: Any, make_route: Any, tmp_path: Path
) -> None:
    tracker, page = live_tracker, browser_page
    order, token = make_order("ord_c", *DEST, merchant="Bäckerei <Müller>")
    await tracker.publish(order)
    stops = [("other", DEST[0] - 0.01, DEST[1]), ("ord_c", *DEST)]
    await tracker.publish(make_route("veh_1", stops, start=(DEST[0] - 0.03, DEST[1])))
    await ping(tracker, DEST[0] - 0.02, seconds_ago=60)
    await tracker.settle()

    reply = await page.goto(f"{tracker.base_url}/track/{token}")
    assert reply.status == 200
    assert await page.text_content(".merchant") == "Bäckerei <Müller>"
    eta = page.locator("#eta time")
    await eta.wait_for()
    assert (await eta.text_content() or "").strip()
    vehicle = page.locator("#vehicle")
    await vehicle.wait_for(state="attached")
    assert await vehicle.get_attribute("hidden") is None
    assert float(await vehicle.get_attribute("data-y") or "nan") > 160  # south of the address, at the centre
    assert (await page.text_content("#vehicle-text") or "").endswith("km south of your address.")
    await page.screenshot(path=str(tmp_path / "tracking-page.png"), full_page=True)
    await page.evaluate("window.__sameDocument = true")

    await ping(tracker, DEST[0] - 0.004)  # the driver comes much closer

    async def moved() -> bool:  # polled from here: the page's policy forbids evaluating strings in it
        return (await page.text_content("#vehicle-text") or "").endswith(" m south of your address.")

    await eventually(moved, timeout=20, interval=0.2)
    assert await page.evaluate("window.__sameDocument === true")  # updated in place, not reloaded
    rings = await page.locator("#rings text").all_text_contents()
    assert rings
    assert all(label.endswith(" m") for label in rings)
    assert "Updated" in (await page.text_content("#live") or "")


async def test_a_wrong_token_gets_the_plain_404_page(live_tracker: Any, browser_page: Any) -> None:
    reply = await browser_page.goto(f"{live_tracker.base_url}/track/no-such-token")
    assert reply.status == 404
    assert await browser_page.text_content("h1") == "Tracking link not found"
    assert await browser_page.locator("script").count() == 0
