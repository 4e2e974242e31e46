"""Email against a real SMTP server (aiosmtpd): both parts, the customer's language, one-click unsubscribe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from lastmile.common.testing import eventually, publish
from lastmile.notifier.testing import SmtpSink, smtp_server


@pytest.fixture
async def smtp(make_notifier: Any, free_port: Any) -> AsyncIterator[Any]:
    sink = SmtpSink()
    port = free_port()
    with smtp_server(port, sink):
        settings = {
            "email_channel": "smtp",
            "smtp_port": port,
            "smtp_from": "Lastmile <notify@lastmile.test>",
        }
        async with make_notifier(**settings) as n:
            yield sink, n


async def test_an_email_arrives_with_both_parts_in_the_customers_language_and_unsubscribe_headers(
    smtp, orders
) -> None:
    sink, n = smtp
    orders.merchant_name = "Bäckerei <Müller> & Söhne"
    order = orders.created(channels=["email"], language="de-AT", name="Zoë <b>Brandt</b>")
    await publish(n.bus, order)
    await publish(n.bus, orders.scheduled(order.order_id))
    await eventually(lambda: sink.messages)
    mail = sink.messages[0]
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == "Ihre Lieferung von Bäckerei <Müller> & Söhne ist für Di 1. Dez geplant"
    assert mail["Content-Language"] == "de"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Hallo Zoë," in text
    assert "zwischen 11:00 und 13:00 Uhr geplant" in text
    assert order.tracking_url in text
    assert order.tracking_url in html
    assert "Bäckerei &lt;Müller&gt; &amp; Söhne" in html
    assert "<Müller>" not in html
    assert "Zoë," in html
    assert "<b>" not in html
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    assert link.startswith("http://notifier.test/v1/unsubscribe/")
    assert link in html
    assert link in text


async def test_the_one_click_link_ends_emails_to_that_address_and_only_emails(smtp, orders) -> None:
    sink, n = smtp
    order = orders.created()
    await publish(n.bus, order)
    await publish(n.bus, orders.scheduled(order.order_id))
    await eventually(lambda: sink.messages)
    path = urlsplit(sink.messages[0]["List-Unsubscribe"].strip("<>")).path
    page = await n.client.get(path)
    assert page.status_code == 200
    assert 'method="post"' in page.text
    reply = await n.client.post(path, content=b"List-Unsubscribe=One-Click",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert reply.status_code == 200
    await publish(n.bus, orders.delivered(order.order_id))

    async def settled() -> Any:
        log = {(m["kind"], m["channel"]): m["status"] for m in await n.log(order.order_id)}
        return (
            log if len(log) == 4 and "pending" not in log.values() and "sending" not in log.values() else None
        )

    log = await eventually(settled)
    assert log[("delivered", "email")] == "suppressed"
    assert log[("delivered", "sms")] == "sent"
    await asyncio.sleep(0.2)
    assert len(sink.messages) == 1


async def test_a_forged_unsubscribe_link_is_refused(smtp) -> None:
    _, n = smtp
    reply = await n.client.post("/v1/unsubscribe/ZW1haWwuMDAw.AAAA")
    assert reply.status_code == 404


async def test_email_goes_over_starttls_when_configured(make_notifier, orders, free_port, tmp_path) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    sink, port = SmtpSink(), free_port()
    with smtp_server(port, sink, tls=server_tls):
        settings = {
            "email_channel": "smtp",
            "smtp_port": port,
            "smtp_tls": "starttls",
            "smtp_ca_file": str(cert),
        }
        async with make_notifier(**settings) as n:
            order = orders.created(channels=["email"])
            await publish(n.bus, order)
            await publish(n.bus, orders.delivered(order.order_id))
            await eventually(lambda: sink.messages)
    assert sink.encrypted == [True]
    assert sink.messages[0]["Subject"] == "Your Acme parcel has been delivered"
