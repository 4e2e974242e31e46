"""A small simulated day on the embedded platform, start to end, and the invariants every day must keep: each
order ends in a true end state, no customer hears the same thing twice or anything after opting out, nothing is
delivered that was not scheduled first."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from lastmile.common.testing import chromium_page
from lastmile.sim.demo import run_day, write_report
from lastmile.sim.embedded import PORTS
from lastmile.sim.invariants import (
    accepted,
    delivered_without_scheduled_before,
    messages_after_opt_out,
    messages_twice,
    not_in_an_end_state,
)
from lastmile.sim.observe import Observations
from lastmile.sim.runner import SimConfig


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def day(
    tmp_path_factory: pytest.TempPathFactory, free_port: Any
) -> tuple[Observations, dict[str, Any]]:
    var = tmp_path_factory.mktemp("day")
    tomorrow = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(day=tomorrow, seed=11, orders=300, vehicles=14, speed=400)
    ports = {name: free_port() for name in PORTS}
    return await run_day(config, Path(var), ports, status=False)


pytestmark = [pytest.mark.timeout(600), pytest.mark.asyncio(loop_scope="module")]


async def test_every_order_ends_delivered_failed_cancelled_or_unassigned_with_a_reason(
    day: tuple[Observations, dict[str, Any]],
) -> None:
    observations, figures = day
    taken = accepted(observations)
    assert len(taken) >= 290, figures  # a few may be refused on purpose (none are today)
    assert not_in_an_end_state(observations) == []
    states = Counter(o.final_status for o in taken)
    assert states["delivered"] > len(taken) / 2, states


async def test_an_order_s_history_runs_on_the_day_s_clock(day: tuple[Observations, dict[str, Any]]) -> None:
    """The history's times come from order intake (acceptance) and from other services' events (the plan's
    word): in a compressed day all of them are the day's time, so the first plan follows the acceptance."""
    observations, figures = day
    waits = [o.first_plan_min for o in accepted(observations) if o.first_plan_min is not None]
    assert len(waits) >= 250, figures
    assert all(0 <= w < 24 * 60 for w in waits), sorted(waits)[:5] + sorted(waits)[-5:]
    assert figures["first_plan_min"]["same_day"]["samples"] > 0


async def test_the_phones_positions_reach_the_tracker(day: tuple[Observations, dict[str, Any]]) -> None:
    _, figures = day
    assert figures["pings"]["sent"] > 1000, figures["pings"]
    assert figures["pings"]["failed"] < figures["pings"]["sent"] / 100, figures["pings"]


async def test_no_customer_gets_the_same_message_twice(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    assert len(observations.messages) > 300
    assert messages_twice(observations) == []


async def test_no_message_after_an_opt_out(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    assert observations.opted_out, "the day has customers who opt out"
    assert messages_after_opt_out(observations) == []


async def test_every_delivered_order_was_scheduled_before(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    delivered = [o for o in observations.orders.values() if o.final_status == "delivered"]
    assert delivered
    assert delivered_without_scheduled_before(observations) == []


async def test_the_report_opens_in_a_browser_with_its_pictures(
    day: tuple[Observations, dict[str, Any]], tmp_path: Path
) -> None:
    """The report is written as `make demo` writes it and looked at in headless Chromium; the screenshot stays
    beside the test's files (tmp_path) for a person to look at."""
    observations, figures = day
    config = SimConfig(day=datetime.fromisoformat(figures["day"]).date(), seed=11, orders=300, vehicles=14)
    write_report(tmp_path / "report", observations, config, figures)
    errors: list[str] = []
    async with chromium_page(tmp_path / "chromium-profile") as page:
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto((tmp_path / "report" / "index.html").as_uri())
        assert await page.title() == f"Lastmile: a simulated day, {config.day}"
        kpi_rows = await page.locator("table tr").count()
        assert kpi_rows >= 12
        assert "on_time_rate" in await page.locator("table").inner_text()
        for label in ("routes", "deliveries per hour", "ETA error"):
            svg = page.locator(f'svg[aria-label="{label}"]')
            box = await svg.bounding_box()
            assert box is not None, label
            assert box["width"] > 400, label
            assert box["height"] > 150, label
        routes = await page.locator('svg[aria-label="routes"] polyline').count()
        assert routes == figures["vehicles_used"]
        shot = await page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(shot) > 20_000  # a page with pictures, not a blank one
