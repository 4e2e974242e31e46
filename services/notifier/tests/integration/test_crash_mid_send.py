"""The notifier as its own process on the real Kafka and PostgreSQL, killed (SIGKILL) while Twilio holds its
request: after a restart the message goes out again (SMS takes no idempotency key: one duplicate at most, as
docs/design-notes.md says), and the same event delivered three times still makes one message."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lastmile.common import events as ev
from lastmile.common.bus import KafkaBus, OutgoingRecord
from lastmile.common.testing import TEST_OPS_TOKEN, eventually, ops_headers
from lastmile.notifier.testing import FakeTwilio, http_server

pytestmark = pytest.mark.integration
SID, TOKEN = "AC" + "c" * 32, "integration-twilio-token-000000"


def start_notifier(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "lastmile.notifier"], env=env, stdout=out, stderr=out)


async def ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the notifier exited"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url + "/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_crash_between_recording_and_sending_does_not_lose_the_message(
    kafka: Any, postgres: Any, free_port: Any, tmp_path: Path
) -> None:
    stalled, release = asyncio.Event(), asyncio.Event()

    async def stall_the_first(message: dict[str, Any]) -> None:
        if not stalled.is_set():
            stalled.set()
            await release.wait()  # Twilio took it; no answer comes back before the notifier dies

    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN, before_answer=stall_the_first)
    twilio_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASTMILE_")} | {
        "LASTMILE_BUS": "kafka",
        "LASTMILE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "LASTMILE_KAFKA_TOPIC_PREFIX": kafka.prefix,
        "LASTMILE_DATABASE_URL": await postgres("notifier"),
        "LASTMILE_PORT": str(port),
        "LASTMILE_OPS_TOKEN": TEST_OPS_TOKEN,
        "LASTMILE_SMS_CHANNEL": "twilio",
        "LASTMILE_TWILIO_BASE_URL": f"http://127.0.0.1:{twilio_port}",
        "LASTMILE_TWILIO_ACCOUNT_SID": SID,
        "LASTMILE_TWILIO_AUTH_TOKEN": TOKEN,
        "LASTMILE_TWILIO_FROM": "+15005550006",
        "LASTMILE_SEND_LEASE_SECONDS": "2",
        "LASTMILE_QUIET_HOURS_START": "00:00",
        "LASTMILE_QUIET_HOURS_END": "00:00",
    }
    now = datetime.now(UTC)
    order = ev.OrderCreated(
        order_id="ord_crash", merchant_id="mer_1", merchant_name="Acme", reference="C1", depot_id="dep_1",
        recipient=ev.Recipient(name="Ada", phone="+447700900555", channels=["sms"]),
        destination=ev.Destination(lat=52.5, lon=13.4),
        time_windows=[ev.TimeWindow(start=now, end=now + timedelta(hours=2))],
        tracking_token="t", tracking_url="http://127.0.0.1:8003/track/t", created_at=now,
    )  # fmt: skip
    delivered = ev.Delivered(order_id="ord_crash", vehicle_id="veh_1", at=now).envelope("tracker")
    bus = KafkaBus(kafka.bootstrap, client_id="test", topic_prefix=kafka.prefix)
    await bus.start()
    log = tmp_path / "notifier.log"
    async with http_server(fake.app(), twilio_port):
        notifier = start_notifier(env, log)
        try:
            await eventually(lambda: ready(url, notifier), timeout=90, interval=0.3)
            await bus.publish([OutgoingRecord("orders.v1", b"dep_1", order.envelope("intake").to_bytes())])
            same = OutgoingRecord("deliveries.v1", b"ord_crash", delivered.to_bytes())
            await bus.publish([same, same, same])
            await asyncio.wait_for(stalled.wait(), 60)
            notifier.send_signal(signal.SIGKILL)  # dies after the claim was recorded, before the answer
            notifier.wait(timeout=10)
            release.set()
            notifier = start_notifier(env, log)
            await eventually(lambda: ready(url, notifier), timeout=90, interval=0.3)

            async def sent() -> list[dict[str, Any]] | None:
                async with httpx.AsyncClient(timeout=5) as http:
                    reply = await http.get(url + "/v1/notifications", params={"order_id": "ord_crash"},
                                           headers=ops_headers())  # fmt: skip
                found: list[dict[str, Any]] = reply.json()
                return found if found and found[0]["status"] == "sent" else None

            log_rows = await eventually(sent, timeout=60, interval=0.3)
            await bus.publish([same])  # and once more, after the restart
            await asyncio.sleep(2)
        finally:
            release.set()
            notifier.terminate()
            notifier.wait(timeout=15)
            await bus.stop()
    assert [(m["kind"], m["channel"], m["attempts"]) for m in log_rows] == [("delivered", "sms", 2)]
    # Twilio got the message twice: once before the crash (its fate unknown), once after. Never a third time.
    assert [m["To"] for m in fake.messages] == ["+447700900555", "+447700900555"]
