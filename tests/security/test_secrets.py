"""Secrets and personal data: nothing of the customers' or the keys in logs or metrics, keys stored hashed,
webhooks that cannot be pointed at our own network."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from lastmile.common.auth import hash_secret
from lastmile.common.testing import find_leaks

pytestmark = pytest.mark.security


def test_the_scanner_finds_each_kind_of_secret_in_any_spelling() -> None:
    lines = [
        "sent to 4915123456789 ok",  # a phone without its +
        "from ADA@example.com",  # is not the address given (case differs): still caught in lower case below
        "key lm_live_[redacted] body abcdefghijklmnopqrstuvwx",  # a key's body without its prefix
        "nothing here",
    ]
    found = find_leaks(
        ["+4915123456789", "ada@example.com", "lm_live_abcdefghijklmnopqrstuvwx"], logs=lines, metrics=["x 1"]
    )
    assert [f.split(" contains ")[0] for f in found] == ["logs[0]", "logs[2]"]
    assert find_leaks(["ADA@example.com"], logs=lines) == [
        "logs[1] contains 'ADA@example.com': …from ADA@example.com…"
    ]
    assert find_leaks(["+4915123456789"], logs=["order 2030-12-02T10:00 count 3"]) == []


async def test_no_phone_email_or_key_in_any_log_line_or_metric_while_orders_go_to_delivered(
    platform: Any, captured_logs: Any
) -> None:
    orders = await platform.flow(3)
    # and the edges where a careless line would repeat what it was given: refused keys, a rejected order
    # (invalid email address), an order of another merchant, a bad device key, a status callback
    await platform["order-intake"].get("/v1/orders", headers=platform.bearer(platform.revoked_merchant_key))
    await platform["order-intake"].get(f"/v1/orders/{orders[0].id}", headers=platform.merchant_b)
    bad = platform.order_body()
    bad["recipient"]["email"] = "not-an-address+4915111222333"
    await platform["order-intake"].post("/v1/orders", json=bad, headers=platform.merchant_a)
    await platform["tracker"].post(
        "/v1/pings",
        json={"pings": [{"lat": 1, "lon": 1}]},
        headers=platform.bearer(platform.revoked_device_key),
    )
    await platform.settle()
    assert len(platform.messages("delivered")) == 6, "the flow sent an SMS and an email per order"

    metrics = [(await platform[s].get("/metrics")).text for s in platform.apps]
    metrics.append(generate_latest(REGISTRY).decode())
    personal = [v for o in orders for v in (o.body["recipient"]["phone"], o.body["recipient"]["email"])]
    personal += [bad["recipient"]["email"]]
    lines = captured_logs.lines()
    assert len(lines) > 20, "the services logged while the orders flowed"
    assert find_leaks([*personal, *platform.secrets()], logs=lines, metrics=metrics) == []
    # The services do not even ask to log them (the formatter's masking is a second line of defence).
    assert find_leaks([*personal, *platform.secrets()], unmasked_logs=captured_logs.raw()) == []


def _all_rows(database_url: str) -> list[str]:
    """Every row of every table of a SQLite database, as text."""
    path = database_url.split("///", 1)[1]
    rows = []
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            rows += [f"{table}: {row!r}" for row in db.execute(f'select * from "{table}"')]  # noqa: S608
    return rows


async def test_api_keys_and_device_keys_are_stored_only_as_hashes(platform: Any) -> None:
    await platform.flow(1)
    keys = [m["api_key"] for m in platform.merchants] + [d["device_key"] for d in platform.devices]
    keys += [platform.revoked_merchant_key, platform.revoked_device_key]
    for service, app in platform.apps.items():
        rows = _all_rows(app.state.runtime.settings.database_url)
        assert find_leaks(keys, **{service: rows}) == []
    # the hashes are there instead: where the keys are checked
    for service, issued in (
        ("order-intake", [m["api_key"] for m in platform.merchants]),
        ("notifier", [m["api_key"] for m in platform.merchants]),
        ("tracker", [d["device_key"] for d in platform.devices]),
        ("planner", [d["device_key"] for d in platform.devices]),
    ):
        text = "\n".join(_all_rows(platform.apps[service].state.runtime.settings.database_url))
        assert all(hash_secret(k) in text for k in issued), service


REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://127.1:8080/hook",  # loopback, short form
    "http://2130706433/hook",  # loopback as one number
    "http://0x7f000001/hook",
    "http://0.0.0.0/hook",
    "http://localhost/hook",  # a name that resolves to loopback
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",  # unique local
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:10.0.0.1]/hook",
    "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "http://[64:ff9b:1::808:808]/hook",  # local-use NAT64
    "http://[::ffff:0:a00:1]/hook",  # SIIT of 10.0.0.1
    "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
    "http://[::a00:1]/hook",  # IPv4-compatible (deprecated) 10.0.0.1
    "http://224.0.0.1/hook",  # multicast
    "http://intranet.corp.example/hook",  # resolves (below) to a private address
    "http://dual.corp.example/hook",  # resolves to a public and a private address
    "ftp://203.0.113.9/hook",
    "http://user:pw@8.8.8.8/hook",
]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names of a private network, answered as its DNS server would (the test machine has no DNS of its own)."""
    import asyncio

    names = {"intranet.corp.example": ["10.20.30.40"], "dual.corp.example": ["8.8.4.4", "192.168.0.7"]}
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in names[host]]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


async def test_webhook_urls_to_private_loopback_and_link_local_addresses_are_refused(
    platform: Any, fake_dns: None
) -> None:
    notifier, headers = platform["notifier"], platform.merchant_a
    for url in REFUSED_URLS:
        reply = await notifier.post("/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=headers)
        assert reply.status_code == 422, (url, reply.text)
        assert reply.headers["content-type"] == "application/problem+json", url
    # a public address is accepted (nothing is sent: no event happens here) ...
    public = {"url": "https://8.8.8.8/hook", "event_types": ["*"]}
    reply = await notifier.post("/v1/webhooks", json=public, headers=headers)
    assert reply.status_code == 201, reply.text
    # ... and cannot be changed to a private one afterwards
    for url in ("http://127.0.0.1/hook", "http://intranet.corp.example/hook", "http://[::1]/"):
        change = await notifier.patch(
            f"/v1/webhooks/{reply.json()['id']}", json={"url": url}, headers=headers
        )
        assert change.status_code == 422, (url, change.text)
    assert (await notifier.get("/v1/webhooks", headers=headers)).json()[0]["url"] == public["url"]


async def test_private_webhook_addresses_are_accepted_when_a_setting_allows_them(
    start_platform: Any, fake_dns: None
) -> None:
    async with start_platform(notifier={"webhooks_allow_private": True}) as p:
        for url in ("http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://intranet.corp.example/hook"):
            body = {"url": url, "event_types": ["*"]}
            reply = await p["notifier"].post("/v1/webhooks", json=body, headers=p.merchant_a)
            assert reply.status_code == 201, (url, reply.text)


def test_rows_helper_reads_a_database(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as db:
        db.execute("create table t (a text)")
        db.execute("insert into t values ('lm_live_abcdefghijklmnopqrstuvwxyz')")
    assert find_leaks(["lm_live_abcdefghijklmnopqrstuvwxyz"], db=_all_rows(f"sqlite:///{path}"))
