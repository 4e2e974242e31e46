"""Merchant webhooks on the wire: Standard Webhooks signatures, and HTTP calls that reach only public addresses.

Signature (standardwebhooks.com): headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the secret's bytes (the
base64 after `whsec_`). SSRF: the host is resolved and every address checked (no loopback, private, link-local,
reserved or multicast) on creation and again on every call, and the call connects to the address that was
checked (so a DNS answer that changes in between cannot redirect it); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp  # wall time: receivers check it against theirs
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
        "user-agent": "Lastmile-Webhooks/1",
    }


class UnsafeUrl(ValueError):
    pass


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable webhook URL; raises UnsafeUrl."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must be http or https")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not accepted; verify the signature instead")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrl("the URL's port is not valid") from exc
    return parts.scheme, parts.hostname, port


# IPv6 prefixes that carry an IPv4 address in their last 32 bits, reached through a translator (NAT64, SIIT):
# the IPv4 address is the one that counts. Python calls these prefixes global whatever they embed.
_EMBEDS_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"))
# Local-use NAT64 (RFC 8215) and the deprecated IPv4-compatible addresses: never a public destination.
_NEVER_PUBLIC = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("::/96"))


def is_public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER_PUBLIC):
            return False
        if ip.ipv4_mapped is not None or ip.sixtofour is not None:
            ip = ip.ipv4_mapped or ip.sixtofour  # type: ignore[assignment]
        elif any(ip in net for net in _EMBEDS_IPV4):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The host's addresses, all of them public unless `allow_private`; raises UnsafeUrl."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise UnsafeUrl(f"the host {host!r} resolves to a non-public address ({refused[0]})")
    return addresses


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookClient:
    def __init__(self, *, timeout_s: float, allow_private: bool, connections: int) -> None:
        self.allow_private = allow_private
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def post(self, url: str, secret: str, msg_id: str, body: bytes) -> Answer:
        started = time.perf_counter()
        try:
            scheme, host, port = check_url(url)
            address = (await resolve(host, port, allow_private=self.allow_private))[0]
            target = httpx.URL(url).copy_with(host=address)
            request_headers = headers(secret, msg_id, body) | {"host": httpx.URL(url).netloc.decode()}
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            reply = await self.http.post(target, content=body, headers=request_headers, extensions=extensions)
            await reply.aclose()
        except UnsafeUrl as exc:
            return Answer(None, f"refused: {exc}", time.perf_counter() - started)
        except httpx.HTTPError as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - started)
        error = None if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}"
        return Answer(reply.status_code, error, time.perf_counter() - started)

    async def close(self) -> None:
        await self.http.aclose()
