"""Credentials: random secrets shown once and stored hashed, bearer tokens, and the ops-token guard."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from lastmile.common.errors import Unauthorized

MERCHANT_KEY_PREFIX = "lm_live_"
DEVICE_KEY_PREFIX = "lm_dev_"


def new_secret(prefix: str) -> str:
    """256 random bits, URL-safe, with a prefix that says what it is (and that log redaction recognises)."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256: the secrets are 256 random bits, so a slow KDF would add cost per request and no safety."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_token(request: Request) -> str | None:
    return bearer_from_header(request.headers.get("authorization", ""))


def bearer_from_header(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header's value, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_ops(request: Request) -> None:
    """Routes for ops teams: `Authorization: Bearer <LASTMILE_OPS_TOKEN>`. Async: FastAPI runs a plain function
    dependency in its thread pool, whose tokens the whole app shares."""
    token = bearer_token(request)
    expected = request.app.state.runtime.settings.ops_token.get_secret_value()
    if token is None or not same(token, expected):
        raise Unauthorized("An ops token is required")


OpsAuth = Annotated[None, Depends(require_ops)]
