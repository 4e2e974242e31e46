"""Stand-ins for the providers, for tests and benchmarks: a Twilio Messages API built to its documented wire
format (with signed status callbacks and inbound messages) and an SMTP server (aiosmtpd) that keeps what it
receives. `python -m lastmile.notifier.testing twilio|smtp --port N` runs one as its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email
import email.policy
import json
import secrets
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lastmile.notifier.sms import signature

INVALID_NUMBER = "+15005550001"  # Twilio's test number for "invalid To": error 21211
UNSUBSCRIBED_NUMBER = "+15005550004"  # ... for "unsubscribed recipient": error 21610


@dataclass
class FakeTwilio:
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json, as Twilio documents it."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "twilio-test-token-" + "0" * 14
    callback_client: httpx.AsyncClient | None = None  # reaches the notifier; None sends no callbacks
    statuses: tuple[str, ...] = ("sent", "delivered")
    fail_next: int = 0  # answer this many requests with 503
    messages: list[dict[str, Any]] = field(default_factory=list)
    log: Path | None = None
    # Called with each accepted message before the answer goes back (a test can stall it there for ever).
    before_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> FastAPI:
        app = FastAPI()
        app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")(self._create)
        return app

    async def _create(self, account_sid: str, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != _basic(self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        if account_sid != self.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _error(503, 20503, "Service unavailable")
        form: dict[str, str] = {}  # Twilio reads form parameters only from a form-encoded body
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        for name in ("To", "From", "Body"):
            if not form.get(name):
                return _error(400, 21604 if name == "To" else 21602, f"A '{name}' parameter is required.")
        if form["To"] == INVALID_NUMBER:
            return _error(400, 21211, f"The 'To' number {form['To']} is not a valid phone number.")
        if form["To"] == UNSUBSCRIBED_NUMBER:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + secrets.token_hex(16)
        record = {**form, "sid": sid, "received_at": time.time()}
        self.messages.append(record)
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps({"to": form["To"], "at": record["received_at"]}) + "\n")
        if self.callback_client is not None and form.get("StatusCallback"):
            task = asyncio.create_task(self._callbacks(form["StatusCallback"], sid, form))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.before_answer is not None:
            await self.before_answer(record)
        return JSONResponse(_resource(sid, self.account_sid, form), status_code=201)

    async def _callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        for status in self.statuses:
            await asyncio.sleep(0.01)
            params = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": self.account_sid,
                "From": form["From"],
                "To": form["To"],
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": "2010-04-01",
            }
            if status in ("undelivered", "failed"):
                params["ErrorCode"] = "30003"
            await self.post_signed(url, params)

    async def post_signed(self, url: str, params: dict[str, str]) -> httpx.Response:
        """A request as Twilio makes it: form-encoded, with X-Twilio-Signature."""
        assert self.callback_client is not None
        sig = signature(self.auth_token, url, params.items())
        return await self.callback_client.post(url, data=params, headers={"X-Twilio-Signature": sig})

    async def inbound(self, url: str, sender: str, to: str, body: str) -> httpx.Response:
        """A customer's text to our number, as Twilio forwards it to the messaging webhook."""
        params = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": self.account_sid,
            "From": sender,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        return await self.post_signed(url, params)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


def _resource(sid: str, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
    return {
        "sid": sid,
        "account_sid": account_sid,
        "to": form["To"],
        "from": form["From"],
        "body": form["Body"],
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": "1",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
    }


class SmtpSink:
    """An SMTP server (aiosmtpd) that keeps every message it accepts (parsed when a test looks at them: the
    stdlib's parser costs milliseconds a message, which a benchmark should not pay)."""

    def __init__(self, log: Path | None = None) -> None:
        self.raw: list[bytes] = []
        self.encrypted: list[bool] = []  # per message: whether the session had switched to TLS
        self.log = log

    @property
    def messages(self) -> list[EmailMessage]:
        parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.raw]
        return [m for m in parsed if isinstance(m, EmailMessage)]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.raw.append(envelope.original_content or b"")
        self.encrypted.append(session.ssl is not None)
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps({"to": envelope.rcpt_tos[0], "at": time.time()}) + "\n")
        return "250 OK"


@contextlib.contextmanager
def smtp_server(port: int, sink: SmtpSink, tls: ssl.SSLContext | None = None) -> Any:
    """aiosmtpd on 127.0.0.1; with `tls`, STARTTLS is offered and required before MAIL."""
    options: dict[str, Any] = {"tls_context": tls, "require_starttls": True} if tls else {}
    controller = Controller(sink, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def http_server(app: FastAPI, port: int) -> AsyncIterator[uvicorn.Server]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("provider", choices=["twilio", "smtp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, help="one JSON line per message received: to, at")
    parser.add_argument("--account-sid", default=FakeTwilio.account_sid)
    parser.add_argument("--auth-token", default=FakeTwilio.auth_token)
    args = parser.parse_args()
    if args.provider == "smtp":
        with smtp_server(args.port, SmtpSink(args.log)):
            print("ready", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                sys.stdin.read()  # until the parent closes our stdin
        return
    fake = FakeTwilio(account_sid=args.account_sid, auth_token=args.auth_token, log=args.log)
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    print("ready", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
