"""Email over SMTP (aiosmtplib): plain text and HTML parts, List-Unsubscribe headers (RFC 2369, RFC 8058),
a small pool of kept-open connections, TLS (implicit or STARTTLS) when configured."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import email.header
import email.utils

import aiosmtplib

from lastmile.notifier.channels import OutgoingMessage, SendError


def build(message: OutgoingMessage, sender: str, domain: str) -> bytes:
    """The message as MIME (multipart/alternative: plain text, then HTML), written directly: the stdlib's
    EmailMessage costs milliseconds a message, which matters at hundreds of messages a second."""
    boundary = f"=_lastmile_{message.id}"
    headers = {
        "From": _header(sender),
        "To": message.to,
        "Subject": _header(message.subject or ""),
        "Date": email.utils.formatdate(localtime=False),
        # The same Message-ID on every attempt: receivers that dedupe on it see one message.
        "Message-ID": f"<{message.id}@{domain}>",
        "MIME-Version": "1.0",
        "Auto-Submitted": "auto-generated",
        "Content-Language": message.language,
        **{name: _header(value) for name, value in message.headers.items()},
    }
    parts = [(message.body, "plain")] + ([(message.html, "html")] if message.html else [])
    lines = [f"{name}: {value}" for name, value in headers.items()]
    lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
    for content, subtype in parts:
        lines += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            binascii.b2a_qp(content.encode(), istext=True).decode("ascii").replace("\n", "\r\n"),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("ascii")


def _header(value: str) -> str:
    if value.isascii():
        return value.replace("\r", " ").replace("\n", " ")
    name, address = email.utils.parseaddr(value)
    if address and "@" in address and value.rstrip().endswith(">"):
        return email.utils.formataddr((name, address), charset="utf-8")
    return email.header.Header(value.replace("\n", " "), "utf-8").encode()


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
        ca_file: str | None = None,
        sender: str,
        connections: int,
        timeout_s: float,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username or None, password or None
        self.ca_file = ca_file
        self.sender, self.timeout_s = sender, timeout_s
        self.envelope_from = email.utils.parseaddr(sender)[1]
        self.domain = self.envelope_from.rpartition("@")[2] or "lastmile.invalid"
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)
        self._all: set[aiosmtplib.SMTP] = set()

    async def send(self, message: OutgoingMessage) -> str:
        raw = build(message, self.sender, self.domain)
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
            cert_bundle=self.ca_file,
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
