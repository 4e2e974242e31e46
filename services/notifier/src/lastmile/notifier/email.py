"""Email over SMTP (aiosmtplib): plain text and HTML parts, List-Unsubscribe headers (RFC 2369, RFC 8058),
a small pool of kept-open connections, TLS (implicit or STARTTLS) when configured."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import email.utils
from email.message import EmailMessage

import aiosmtplib

from lastmile.notifier.channels import OutgoingMessage, SendError


def build(message: OutgoingMessage, sender: str, domain: str) -> EmailMessage:
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = email.utils.formatdate(localtime=False)
    # The same Message-ID on every attempt: receivers that dedupe on it see one message.
    mail["Message-ID"] = f"<{message.id}@{domain}>"
    mail["Auto-Submitted"] = "auto-generated"
    for name, value in message.headers.items():
        mail[name] = value
    mail.set_content(message.body)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    mail["Content-Language"] = message.language  # after the body: setting content clears Content-* headers
    return mail


class SmtpChannel:
    idempotent = False  # SMTP has no idempotency key; a Message-ID helps receivers that dedupe, no more

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: str,
        username: str,
        password: str,
        sender: str,
        connections: int,
        timeout_s: float,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username or None, password or None
        self.sender, self.timeout_s = sender, timeout_s
        self.envelope_from = email.utils.parseaddr(sender)[1]
        self.domain = self.envelope_from.rpartition("@")[2] or "lastmile.invalid"
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)
        self._all: set[aiosmtplib.SMTP] = set()

    async def send(self, message: OutgoingMessage) -> str:
        raw = build(message, self.sender, self.domain).as_bytes()
        async with self._slots:
            client = await self._client()
            phase = "mail"
            try:
                await client.mail(self.envelope_from)
                phase = "rcpt"
                await client.rcpt(message.to)
                phase = "data"
                await client.data(raw)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset(client)
                # 5xx: the server refuses this message for good; 4xx: try later. Either way it was not taken.
                raise SendError(
                    f"smtp {phase}: {exc.code} {exc.message}"[:300], permanent=exc.code >= 500
                ) from exc
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._drop(client)
                # Lost during DATA: the server may have queued the message before the line went.
                raise SendError(f"smtp {phase}: {type(exc).__name__}", ambiguous=phase == "data") from exc
            self._idle.put_nowait(client)
        return f"<{message.id}@{self.domain}>"

    async def _client(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
            self._drop(client)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls == "tls",
            start_tls=True if self.tls == "starttls" else False if self.tls == "none" else None,
            username=self.username,
            password=self.password,
            timeout=self.timeout_s,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendError(f"smtp connect: {type(exc).__name__}: {exc}"[:300]) from exc
        self._all.add(client)
        return client

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._drop(client)
            return
        self._idle.put_nowait(client)

    def _drop(self, client: aiosmtplib.SMTP) -> None:
        self._all.discard(client)
        with contextlib.suppress(Exception):
            client.close()

    async def close(self) -> None:
        for client in list(self._all):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2)
            self._drop(client)
