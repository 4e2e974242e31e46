"""SMS through Twilio's Programmable Messaging REST API, as documented, and the check of Twilio's webhooks.

Send: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form fields `To`, `From`, `Body`,
`StatusCallback`, HTTP basic auth (account SID, auth token); 201 with the Message resource (`sid`, `status`).
Errors are JSON `{code, message, more_info, status}`. Twilio signs the requests it makes to us (status callbacks,
inbound messages) with `X-Twilio-Signature`: base64 HMAC-SHA1, keyed by the auth token, of the full URL
followed by every POST parameter's name and value, sorted by name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from lastmile.notifier.channels import OutgoingMessage, SendError

# 400 answers name a problem with the message itself (invalid or unreachable number, an unsubscribed
# recipient): sending it again gets the same answer. 21610: the recipient texted STOP to our number.
UNSUBSCRIBED = 21610

# Later states never go back to earlier ones, whatever order Twilio's callbacks arrive in.
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
}
FAILED_STATUSES = ("undelivered", "failed")


class TwilioChannel:
    """aiohttp rather than httpx here: at hundreds of messages a second httpx's per-request cost was the largest
    part of the notifier's CPU time (measured with bench/notifier.py)."""

    idempotent = False  # Twilio's Messages API takes no idempotency key: an unknown outcome may duplicate

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        status_callback: Callable[[str], str],
        timeout_s: float,
        connections: int,
    ) -> None:
        self.account_sid, self.sender, self.status_callback = account_sid, sender, status_callback
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.headers = {  # HTTP basic auth, as Twilio documents; the form is encoded here (aiohttp's FormData
            "Authorization": f"Basic {credentials}",  # costs more than urlencode)
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
        self.connections = connections
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:  # made on first use: it belongs to the running event loop
            connector = aiohttp.TCPConnector(limit=self.connections)
            self._http = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, headers=self.headers
            )
        return self._http

    async def send(self, message: OutgoingMessage) -> str:
        form = urlencode(
            {
                "To": message.to,
                "From": self.sender,
                "Body": message.body,
                "StatusCallback": self.status_callback(message.id),
            }
        ).encode()
        try:
            async with self._session().post(self.url, data=form) as reply:
                status, body = reply.status, await reply.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise SendError(f"twilio unreachable: {type(exc).__name__}") from exc
        except (
            aiohttp.ClientError,
            TimeoutError,
        ) as exc:  # the request went out; whether Twilio took it is unknown
            raise SendError(f"twilio: no answer ({type(exc).__name__})", ambiguous=True) from exc
        if status in (200, 201):
            sid = _json(body).get("sid")
            if not isinstance(sid, str) or not sid:
                raise SendError("twilio: answer without a message sid", ambiguous=True)
            return sid
        raise _error(status, body)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def _json(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class TwilioError(SendError):
    def __init__(self, reason: str, *, code: int | None, permanent: bool) -> None:
        super().__init__(reason, permanent=permanent)
        self.code = code


def _error(status: int, body: bytes) -> TwilioError:
    found = _json(body)
    code, text = found.get("code"), str(found.get("message", body[:300].decode(errors="replace")))[:300]
    reason = f"twilio {status}" + (f" code {code}" if code else "") + (f": {text}" if text else "")
    # 400: the message itself is refused. 401/403/404: our configuration, 429/5xx: Twilio's load: retry.
    return TwilioError(reason, code=code if isinstance(code, int) else None, permanent=status == 400)


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """X-Twilio-Signature of a request Twilio makes to `url` with these form parameters."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def valid_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]], given: str | None) -> bool:
    if not given or not auth_token:
        return False
    return hmac.compare_digest(signature(auth_token, url, params), given)


def later(current: str | None, new: str) -> bool:
    """Whether a callback's status moves the message forward."""
    return STATUS_RANK.get(new, -1) >= STATUS_RANK.get(current or "", -1)
