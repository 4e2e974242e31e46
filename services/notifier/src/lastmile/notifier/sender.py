"""The sender: claims due messages, calls the providers through a bounded pool per channel, records answers.

Each message is recorded before the provider call (claimed: `sending`, with a lease and the attempt counted)
and after it (`sent`, `failed`, or back to `pending` with a retry time), answers from many calls written in one
transaction. A crash between the two leaves the message `sending`; when its lease runs out it is claimed again
and counted `ambiguous`. Channels that dedupe on the message id (the file outbox) just send it again; the
others (SMS, SMTP) send it again once at most, so a customer gets one duplicate at worst, never two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from lastmile.common import events as ev
from lastmile.common import outbox
from lastmile.common.clock import Clock
from lastmile.common.db import Database
from lastmile.common.runtime import BackgroundTask
from lastmile.notifier import consent
from lastmile.notifier.channels import Channel, OutgoingMessage, SendError
from lastmile.notifier.domain import retry_delay
from lastmile.notifier.metrics import MESSAGES, OPT_OUTS, PROVIDER_LATENCY
from lastmile.notifier.settings import NotifierSettings
from lastmile.notifier.sms import UNSUBSCRIBED
from lastmile.notifier.store import Claimed, NotifierStore, SendingStore

log = logging.getLogger(__name__)
SOURCE = "notifier"


@dataclass(frozen=True)
class Outcome:
    message: OutgoingMessage
    to_hash: str
    status: str  # sent | pending (retry) | failed | suppressed
    provider_id: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    ambiguous: int = 0
    opt_out: bool = False


def unsubscribe_url(settings: NotifierSettings, channel: str, to_hash: str) -> str:
    token = consent.unsubscribe_token(settings.unsubscribe_key(), channel, to_hash)
    return f"{settings.base_url}/v1/unsubscribe/{token}"


class _Recorder(BackgroundTask):
    """The sender's second loop: writes the providers' answers."""

    name = "sender-record"

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def run(self) -> None:
        await self.sender._record_loop()


class Sender(BackgroundTask):
    """Its own loop claims and starts sends; a `_Recorder` writes their answers."""

    name = "sender-claim"

    def __init__(
        self, db: Database, clock: Clock, settings: NotifierSettings, channels: dict[str, Channel]
    ) -> None:
        self.db, self.clock, self.settings, self.channels = db, clock, settings, channels
        self.pools = {name: asyncio.Semaphore(self._pool_size(name)) for name in channels}
        self.capacity = sum(self._pool_size(name) for name in channels)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._answers: asyncio.Queue[Outcome] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._all_answered = asyncio.Event()  # set while no call is in flight
        self._recorder = _Recorder(self)
        self._next_expiry_check = 0.0

    def _pool_size(self, channel: str) -> int:
        return (
            self.settings.send_concurrency_sms if channel == "sms" else self.settings.send_concurrency_email
        )

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self._recorder.start()
        await super().start()

    async def stop(self) -> None:
        """Stop claiming, let calls in flight finish (briefly), record their answers, close the channels."""
        started = self._task is not None
        await super().stop()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=2)
        if started:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._answers.join()
        await self._recorder.stop()
        for task in self._in_flight:
            task.cancel()
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # also the pace at which held and retried messages fall due
                    await self._wake.wait()
            self._wake.clear()
            # Events come in bursts (a transaction of many): one claim for the rows of several.
            await asyncio.sleep(self.settings.send_claim_linger_seconds)
            try:
                while await self.send_due():
                    pass
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("claiming messages failed (%s); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def send_due(self) -> int:
        """Claim as many due messages as there is room for in the pools and start sending them."""
        room = self.capacity - len(self._in_flight)
        if room <= 0:
            self._room.clear()
            await self._room.wait()
            return 1
        now = self.clock.now()
        # Leases and retry delays are real time (what providers take), whatever the clock's speed.
        lease_until = now + timedelta(seconds=self.settings.send_lease_seconds * self.clock.speed)
        expired = time.monotonic() >= self._next_expiry_check
        if expired:
            self._next_expiry_check = time.monotonic() + 1.0
        async with self.db.transaction() as session:
            store = SendingStore(session)
            limit = min(room, self.settings.send_batch)
            rows = await store.claim_due(now, lease_until, limit, expired=True) if expired else []
            rows += await store.claim_due(now, lease_until, limit - len(rows))
        for row in rows:
            message = self._message(row)
            if row.opted_out:
                self._answers.put_nowait(
                    Outcome(message, row.to_hash, "suppressed", error="recipient opted out")
                )
            elif row.ambiguous >= 2 and not self.channels[row.channel].idempotent:
                error = "outcome of two attempts unknown; not sent again so as not to duplicate it twice"
                self._answers.put_nowait(Outcome(message, row.to_hash, "failed", error=error))
            else:
                task = asyncio.create_task(self._send(message, row.to_hash, row.attempts))
                self._in_flight.add(task)
                self._all_answered.clear()
                task.add_done_callback(self._done)
        return len(rows)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._room.set()
        if not self._in_flight:
            self._all_answered.set()

    def _message(self, row: Claimed) -> OutgoingMessage:
        headers: dict[str, str] = {}
        if row.channel == "email":
            link = unsubscribe_url(self.settings, "email", row.to_hash)
            headers = {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        return OutgoingMessage(
            id=row.id,
            order_id=row.order_id,
            channel=row.channel,
            kind=row.kind,
            to=row.to,
            body=row.body,
            subject=row.subject,
            html=row.html,
            language=row.language,
            headers=headers,
        )

    async def _send(self, message: OutgoingMessage, to_hash: str, attempts: int) -> None:
        channel = self.channels[message.channel]
        async with self.pools[message.channel]:
            started = time.perf_counter()
            try:
                provider_id = await channel.send(message)
                outcome = Outcome(message, to_hash, "sent", provider_id=provider_id)
            except SendError as exc:
                outcome = self._failure(message, to_hash, attempts, exc)
            except Exception as exc:  # a bug or an unforeseen error: treat as unknown, retry later
                log.exception("channel %s raised", message.channel)
                outcome = self._failure(
                    message, to_hash, attempts, SendError(repr(exc)[:300], ambiguous=True)
                )
            PROVIDER_LATENCY.labels(message.channel, outcome.status).observe(time.perf_counter() - started)
        self._answers.put_nowait(outcome)

    def _failure(self, message: OutgoingMessage, to_hash: str, attempts: int, exc: SendError) -> Outcome:
        opt_out = getattr(exc, "code", None) == UNSUBSCRIBED
        if exc.permanent or attempts >= self.settings.send_max_attempts:
            return Outcome(
                message, to_hash, "failed", error=exc.reason, ambiguous=int(exc.ambiguous), opt_out=opt_out
            )
        delay = retry_delay(
            attempts,
            self.settings.send_retry_base_seconds,
            self.settings.send_retry_max_seconds,
            random.random(),
        )
        due = self.clock.now() + timedelta(seconds=delay * self.clock.speed)
        return Outcome(
            message, to_hash, "pending", error=exc.reason, next_attempt_at=due, ambiguous=int(exc.ambiguous)
        )

    async def _record_loop(self) -> None:
        while True:
            batch = [await self._answers.get()]
            if self._in_flight:  # more answers are coming: one transaction for many (the messages are with
                # the providers already; this delays only the log and notifications.v1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.send_record_linger_seconds):
                        await self._all_answered.wait()
            while not self._answers.empty() and len(batch) < 1000:
                batch.append(self._answers.get_nowait())
            backoff = 0.2
            while True:  # answers are kept until written: the database may be away for a while
                try:
                    await self.record(batch)
                    for _ in batch:
                        self._answers.task_done()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("recording %d answers failed (%s); retrying", len(batch), exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)

    async def record(self, batch: list[Outcome]) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            await SendingStore(session).apply([_change(o, now) for o in batch])
            for o in batch:
                m = o.message
                if o.status == "sent":
                    sent = ev.NotificationSent(
                        notification_id=m.id,
                        order_id=m.order_id,
                        channel=m.channel,
                        kind=m.kind,
                        provider_id=o.provider_id,
                        at=now,
                    )
                    # The wire form without an Envelope model per message (one per message sent).
                    outbox.stage(session, sent.TOPIC, sent.key(), sent.serialised(SOURCE, time=now))
                elif o.status == "failed":
                    outbox.add(
                        session,
                        ev.NotificationFailed(
                            notification_id=m.id,
                            order_id=m.order_id,
                            channel=m.channel,
                            kind=m.kind,
                            error=o.error or "failed",
                            at=now,
                        ),
                        source=SOURCE,
                    )
                if o.opt_out and await NotifierStore(session).opt_out(m.channel, o.to_hash, "provider", now):
                    OPT_OUTS.labels(m.channel, "provider").inc()
        tally = Counter(
            (o.message.channel, o.message.kind, "retried" if o.status == "pending" else o.status)
            for o in batch
        )
        for labels, n in tally.items():
            MESSAGES.labels(*labels).inc(n)


def _change(o: Outcome, now: datetime) -> dict[str, object]:
    return {
        "id": o.message.id,
        "status": o.status,
        "provider_id": o.provider_id,
        "error": o.error,
        "sent_at": now if o.status == "sent" else None,
        "next_attempt_at": o.next_attempt_at or now,
        "ambiguous": o.ambiguous,
    }
