"""Secrets and personal data over a whole simulated day: no recipient's phone number or email address, no merchant
API key, device key, ops token or provider token in any line the platform logged or in any label of its metrics.

The day is the simulator's (`lastmile.sim.demo.run_day`), embedded mode: the four services in one child process
that writes its log to `<var>/platform.log`, here at INFO as the services run in production (`LASTMILE_LOG_LEVEL`;
the embedded child logs only warnings by default). At INFO the services say little in a quiet day (their start
and stop, warnings when something is retried): the in-process test in test_secrets.py captures every level. Every service's /metrics is scraped beside the day until it ends (the platform stops when
`run_day` returns); label sets only grow, so the last scrape holds every label the day produced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from lastmile.common.clock import Clock
from lastmile.common.testing import find_leaks
from lastmile.sim.day import MERCHANTS
from lastmile.sim.demo import run_day
from lastmile.sim.embedded import PORTS
from lastmile.sim.invariants import accepted
from lastmile.sim.launch import Launched
from lastmile.sim.runner import SimConfig

pytestmark = [pytest.mark.security, pytest.mark.timeout(240)]


async def test_no_phone_email_or_key_in_any_log_line_or_metric_label_during_a_whole_simulated_day(
    tmp_path: Path, free_port: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASTMILE_LOG_LEVEL", "INFO")  # read by the embedded child
    tomorrow = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=1)).date()
    config = SimConfig(day=tomorrow, seed=17, orders=150, vehicles=8, speed=800)
    metrics: dict[str, str] = {}
    scraped_at: list[datetime] = []
    platform_secrets: list[str] = []

    async def during(clock: Clock, launched: Launched) -> None:
        client = launched.platform
        platform_secrets.append(client.ops["Authorization"].removeprefix("Bearer "))
        platform_secrets.append(client.twilio_token)
        while True:  # until the day is over and this task is cancelled
            with contextlib.suppress(httpx.HTTPError):
                texts = {}
                for service, url in client.urls.items():
                    reply = await client.http.get(url + "/metrics")
                    assert reply.status_code == 200, (service, reply.status_code)
                    texts[service] = reply.text
                metrics.update(texts)
                scraped_at.append(clock.now())
            await asyncio.sleep(2.0)

    var = tmp_path / "day"
    ports = {name: free_port() for name in PORTS}
    observations, figures = await run_day(config, var, ports, "embedded", status=False, during=during)

    # A whole day took place, and was watched to its end.
    taken = accepted(observations)
    assert len(taken) >= 140, figures
    states = Counter(o.final_status for o in taken)
    assert states["delivered"] > len(taken) / 2, states
    assert len(observations.messages) > 150
    assert sorted(metrics) == sorted(PORTS)
    last_arrival = max(o.arrived_at for o in taken if o.arrived_at)
    assert scraped_at, "the metrics were never scraped"
    assert scraped_at[-1] > last_arrival, "the metrics were not scraped after the last stop"
    lines = (var / "platform.log").read_text(errors="replace").splitlines()
    # At INFO (the level the services run at in production) from the four apps' start to their stop.
    assert sum("Application startup complete." in line for line in lines) == len(PORTS), lines[:20]
    assert sum("Application shutdown complete." in line for line in lines) == len(PORTS), lines[-20:]
    assert all("{" in metrics[s] for s in PORTS), "the metrics carry labels to scan"

    personal = {
        value
        for o in observations.orders.values()
        for value in (o.plan.body["recipient"]["phone"], o.plan.body["recipient"]["email"])
    }
    personal |= {m["to"] for m in observations.messages}
    keys = observations.keys
    assert len(keys) == len(MERCHANTS) + config.vehicles
    assert {o.merchant_key for o in observations.orders.values()} <= set(keys)
    assert len(platform_secrets) == 2
    assert all(platform_secrets)
    secrets = [*sorted(personal), *keys, *platform_secrets]
    assert find_leaks(secrets, logs=lines, metrics=list(metrics.values())) == []
