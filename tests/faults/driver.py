"""A consumer or an outbox relay built from lastmile.common's own parts, run as a child process by the fault
tests, which SIGKILL it at a point they choose (`--die`): the process kills itself with SIGKILL there, so
nothing after that point runs, as when a machine loses power.

  driver.py init    --db URL                       outbox, inbox and the `effects` table
  driver.py stage   --db URL --count N --key K     N Arrived events for order K in the outbox (one transaction)
  driver.py consume --bootstrap B --prefix P --db URL --group G [--batch N] [--handle-ms MS]
                    [--die before-commit|after-commit --at N]
  driver.py relay   --bootstrap B --prefix P --db URL [--die after-ack]

The consumer handles `lastmile.delivery.arrived` on deliveries.v1 through the real `KafkaBus` and `Dispatcher`
(inbox in the handler's transaction, offsets committed after it): each handled event inserts one row into
`effects` (key, seq, event id), a table with no unique constraint, so only the inbox stands between a
redelivery and a second effect. `seq` is the event's `at` in seconds after T0 (the producer's sequence per key).
An event whose vehicle_id is "fails" makes the handler raise every time. On SIGTERM it stops cleanly and writes what it counted (handled, duplicate, ...) to `--outcomes`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lastmile.common import events as ev
from lastmile.common import metrics, outbox
from lastmile.common.bus import KafkaBus, Subscription
from lastmile.common.db import Database
from lastmile.common.testing import create_common_tables

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
SERVICE = "fault-driver"


def arrived(key: str, seq: int) -> ev.Arrived:
    return ev.Arrived(order_id=key, vehicle_id="v1", at=T0 + timedelta(seconds=seq))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def init(args: argparse.Namespace) -> None:
    db = Database(args.db)
    try:
        await create_common_tables(db)
        async with db.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS effects (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL,"
                    " seq INTEGER NOT NULL, event_id TEXT NOT NULL, pid INTEGER NOT NULL)"
                )
            )
    finally:
        await db.dispose()


async def stage(args: argparse.Namespace) -> None:
    db = Database(args.db)
    try:
        async with db.transaction() as session:
            for seq in range(1, args.count + 1):
                outbox.add(session, arrived(args.key, seq), source="fault-driver")
    finally:
        await db.dispose()


def bus_of(args: argparse.Namespace) -> KafkaBus:
    return KafkaBus(
        args.bootstrap,
        client_id=f"{SERVICE}-{os.getpid()}",
        topic_prefix=args.prefix,
        partitions=args.partitions,
        request_timeout_ms=5000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        publish_timeout_s=10,
    )


async def until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


async def consume(args: argparse.Namespace) -> None:
    db = Database(args.db)
    handled = 0

    async def on_arrived(session: AsyncSession, envelope: ev.Envelope, event: ev.Arrived) -> None:
        nonlocal handled
        if event.vehicle_id == "fails":
            raise ValueError(
                "this handler cannot take this event"
            )  # not transient: retried, then dead-lettered
        handled += 1
        seq = round((event.at - T0).total_seconds())
        await session.execute(
            sa.text("INSERT INTO effects (key, seq, event_id, pid) VALUES (:k, :s, :e, :p)"),
            {"k": event.order_id, "s": seq, "e": str(envelope.id), "p": os.getpid()},
        )
        if args.handle_ms:
            await asyncio.sleep(args.handle_ms / 1000)
        if handled == args.at and args.die == "before-commit":
            await session.flush()  # the effect reached the database, uncommitted
            die()
        if handled == args.at and args.die == "after-commit":
            Database.after_commit(session, die)  # committed; the offset not yet

    bus = bus_of(args)
    subscription = Subscription(
        service=SERVICE,
        group=args.group,
        db=db,
        handlers={ev.Arrived: on_arrived},
        max_attempts=3,
        batch=args.batch,
    )
    bus.subscribe(subscription)
    await bus.start()
    try:
        await until_terminated()
    finally:
        await bus.stop()
        await db.dispose()
        write_outcomes(args.outcomes)


def write_outcomes(path: str | None) -> None:
    if not path:
        return
    counts: dict[str, int] = {}
    for family in metrics.EVENTS_CONSUMED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("service") == SERVICE:
                outcome = sample.labels["outcome"]
                counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    Path(path).write_text(json.dumps(counts))


async def relay(args: argparse.Namespace) -> None:
    db = Database(args.db)
    bus = bus_of(args)

    class Relay(outbox.OutboxRelay):
        async def _delete(self, ids: Any) -> None:
            if args.die == "after-ack":
                die()  # the broker acknowledged every record of the batch; the rows are still there
            await super()._delete(ids)

    await bus.start()
    relay = Relay(db, bus, service=SERVICE, poll_s=0.2)
    relay.start()
    try:
        await until_terminated()
    finally:
        await relay.stop()
        await bus.stop()
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["init", "stage", "consume", "relay"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--group", default="faults")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--handle-ms", type=float, default=0)
    parser.add_argument("--die", choices=["before-commit", "after-commit", "after-ack"])
    parser.add_argument("--at", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--key", default="ord_1")
    parser.add_argument("--outcomes")
    args = parser.parse_args()
    asyncio.run({"init": init, "stage": stage, "consume": consume, "relay": relay}[args.command](args))


if __name__ == "__main__":
    main()
