"""A small simulated day on the embedded platform, start to end, and the invariants every day must keep: each
order ends in a true end state, no customer hears the same thing twice or anything after opting out, nothing is
delivered that was not scheduled first."""

from __future__ import annotations

import asyncio
import functools
import socket
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lastmile.common.testing import chromium_page
from lastmile.sim.demo import run_day, write_report
from lastmile.sim.embedded import PORTS
from lastmile.sim.observe import Observations
from lastmile.sim.runner import SimConfig

END_STATES = {"delivered", "failed", "cancelled", "unassigned"}
# Kinds a customer hears once per order. ("scheduled" comes again with a new promise: a failed delivery tried
# again, an address change. The same text twice is what must never happen; that is checked for every kind.)
ONCE = {"out_for_delivery", "arriving_soon", "delivered"}


@functools.cache
def _the_day() -> tuple[Observations, dict[str, Any]]:
    """One day shared by the module's tests, played once (its own event loop: the platform is a child process)."""
    var = Path(tempfile.mkdtemp(prefix="lastmile-day-"))
    tomorrow = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(day=tomorrow, seed=11, orders=300, vehicles=14, speed=400)
    ports = {name: _free_port() for name in PORTS}
    return asyncio.run(run_day(config, var, ports, status=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def day() -> tuple[Observations, dict[str, Any]]:
    return _the_day()


pytestmark = pytest.mark.timeout(600)


def test_every_order_ends_delivered_failed_cancelled_or_unassigned_with_a_reason(
    day: tuple[Observations, dict[str, Any]],
) -> None:
    observations, figures = day
    accepted = [o for o in observations.orders.values() if o.order_id]
    assert len(accepted) >= 290, figures  # a few may be refused on purpose (none are today)
    states = Counter(o.final_status for o in accepted)
    assert set(states) <= END_STATES, states
    assert states["delivered"] > len(accepted) / 2, states
    unexplained = [o.order_id for o in accepted if o.final_status == "unassigned" and not o.unassigned_reason]
    assert not unexplained


def test_no_customer_gets_the_same_message_twice(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    assert len(observations.messages) > 300
    same_text = Counter((m["channel"], m["to"], m["body"]) for m in observations.messages)
    assert [k for k, n in same_text.items() if n > 1] == []
    once = Counter(
        (m["order_id"], m["channel"], m["kind"]) for m in observations.messages if m["kind"] in ONCE
    )
    assert [k for k, n in once.items() if n > 1] == []


def test_no_message_after_an_opt_out(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    assert observations.opted_out, "the day has customers who opt out"
    # A message that was already leaving when the customer opted out may land up to a moment later.
    after = [
        (m["channel"], m["kind"])
        for m in observations.messages
        if (at := observations.opted_out.get((m["channel"], m["to"]))) is not None and m["written"] > at + 1.0
    ]
    assert after == []


def test_every_delivered_order_was_scheduled_before(day: tuple[Observations, dict[str, Any]]) -> None:
    observations, _ = day
    delivered = [o for o in observations.orders.values() if o.final_status == "delivered"]
    assert delivered
    for order in delivered:
        assert "scheduled" in order.history, order.history
        assert order.history.index("scheduled") < order.history.index("delivered"), order.history


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
