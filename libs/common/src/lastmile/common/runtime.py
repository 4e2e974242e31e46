"""What every service runs besides its routes: database, bus, outbox relay and consumers, and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lastmile.common.bus import Bus, EventHandler, Subscription, make_bus
from lastmile.common.clock import Clock
from lastmile.common.db import Database, is_transient
from lastmile.common.events import Payload
from lastmile.common.metrics import READY
from lastmile.common.outbox import OutboxRelay
from lastmile.common.settings import CommonSettings

log = logging.getLogger(__name__)


class Runtime:
    """Built by a service's lifespan; `bus` is passed in by the embedded launcher, which then owns it."""

    def __init__(
        self, settings: CommonSettings, *, bus: Bus | None = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.service = settings.service
        self.clock = clock or settings.clock()
        self.db = Database(
            settings.database_url,
            pool_size=settings.database_pool_size,
            echo=settings.database_echo,
            pre_ping=settings.database_pre_ping,
            clock=self.clock,
        )
        self.owns_bus = bus is None
        self.bus = bus if bus is not None else make_bus(settings)
        self.relay = OutboxRelay(
            self.db,
            self.bus,
            service=self.service,
            batch=settings.outbox_batch,
            poll_s=settings.outbox_poll_seconds,
            min_round_s=settings.outbox_min_round_seconds,
        )
        self.subscriptions: list[Subscription] = []

    def subscription(
        self,
        handlers: Mapping[type[Payload], EventHandler],
        *,
        group: str | None = None,
        inbox: bool = True,
        inbox_exempt: frozenset[type[Payload]] = frozenset(),
    ) -> Subscription:
        return Subscription(
            service=self.service,
            group=group or self.service,
            db=self.db,
            handlers=handlers,
            inbox=inbox,
            max_attempts=self.settings.consumer_max_attempts,
            max_event_bytes=self.settings.max_event_bytes,
            batch=self.settings.consumer_batch,
            across_partitions=self.settings.consumer_across_partitions,
            linger_s=self.settings.consumer_linger_seconds,
            inbox_exempt=inbox_exempt,
        )

    async def start(self, migrations: Path, subscriptions: Sequence[Subscription] = ()) -> None:
        await self._migrate(migrations)
        if self.owns_bus:
            await self.bus.start()
        for sub in subscriptions:
            self.bus.subscribe(sub)
            self.subscriptions.append(sub)
        self.relay.start()

    async def _migrate(self, migrations: Path, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await self.db.migrate(migrations)
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                log.warning("database not reachable for migrations (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for sub in self.subscriptions:
            self.bus.unsubscribe(sub)
        self.subscriptions.clear()
        await self.relay.stop()
        if self.owns_bus:
            await self.bus.stop()
        await self.db.dispose()

    async def readiness(self) -> dict[str, str]:
        """Each dependency and 'ok', or the reason it is not."""
        checks: dict[str, str] = {}
        for name, probe in (("database", self.db.ping), ("bus", self.bus.check)):
            try:
                await asyncio.wait_for(probe(), 3.0)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        READY.labels(self.service).set(1 if all(v == "ok" for v in checks.values()) else 0)
        return checks


class BackgroundTask:
    """A service's long-running coroutine (`run`), started after the runtime and cancelled before it stops:
    a `Background` for `web.service_app`."""

    name = "background"
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        raise NotImplementedError
