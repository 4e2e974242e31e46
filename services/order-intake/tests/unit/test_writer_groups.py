"""The group writer gathers requests: a small group waits `wait_s` for more before it is written."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.order_intake.caches import Merchant
from lastmile.order_intake.idempotency import Reply
from lastmile.order_intake.writer import OrderWriter, Pending


class Recording(OrderWriter):
    """Writes nothing: records each group's size and answers every request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cast(Database, None), cast(Clock, None), **kwargs)  # neither is used
        self.groups: list[int] = []

    async def _write(self, group: list[Pending]) -> None:
        self.groups.append(len(group))
        for pending in group:
            pending.future.set_result(Reply(201, b"{}"))


def request() -> Pending:
    return Pending(Merchant("mer_1", "Acme"), None, None, b"")


async def two_requests_20_ms_apart(writer: Recording) -> list[int]:
    await writer.start()
    try:
        first = asyncio.create_task(writer.submit(request()))
        await asyncio.sleep(0.02)
        await asyncio.gather(first, writer.submit(request()))
    finally:
        await writer.stop()
    return writer.groups


async def test_a_small_group_waits_for_the_requests_that_follow() -> None:
    assert await two_requests_20_ms_apart(Recording(wait_s=0.2)) == [2]


async def test_without_a_wait_each_request_is_written_as_it_comes() -> None:
    assert await two_requests_20_ms_apart(Recording(wait_s=0.0)) == [1, 1]


async def test_a_group_as_large_as_small_group_does_not_wait() -> None:
    writer = Recording(wait_s=5.0, small_group=2)
    await writer.start()
    try:
        async with asyncio.timeout(1.0):  # it would wait 5 s if it waited
            await asyncio.gather(writer.submit(request()), writer.submit(request()))
    finally:
        await writer.stop()
    assert writer.groups == [2]
