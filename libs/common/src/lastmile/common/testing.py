"""Test helpers every service's tests use: an app in-process on the in-memory bus and SQLite, waiting, refs."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

T = TypeVar("T")

TEST_OPS_TOKEN = "test-ops-token-" + "x" * 16
# Equal bounds: no quiet hours. Platforms on the wall clock set these, so that no message waits for the morning
# whatever time the tests run (quiet hours have their own tests, on a fixed clock).
ANY_HOUR = {"LASTMILE_QUIET_HOURS_START": "00:00", "LASTMILE_QUIET_HOURS_END": "00:00"}


def random_ref(prefix: str = "t") -> str:
    """Unique per call, so tests running in parallel never collide."""
    return f"{prefix}-{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def app_client(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan (migrations, consumers, relay) and talk to it without a socket."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


_GIVEN_PORTS: set[int] = set()


def listen_ports(count: int = 1) -> int:
    """A port p with p .. p + count - 1 free to listen on now and not handed out before in this process, below the
    kernel's ephemeral range. A port from bind(0) lies inside that range, where any outgoing connection (a
    service's, to the shared broker) may take it before the server binds (a test broker's controller, on the port
    after the broker's, once found it taken); and bind(0) may give the same port to two calls in a row."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = 20000 if low > 21000 else 1024
    for _ in range(500):
        port = random.randrange(first, low - count)
        wanted = range(port, port + count)
        if not _GIVEN_PORTS.intersection(wanted) and all(_bindable(p) for p in wanted):
            _GIVEN_PORTS.update(wanted)
            return port
    raise RuntimeError(f"no {count} free ports in a row below {low}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ops_headers(token: str = TEST_OPS_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(
    probe: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Poll until `probe` returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")


async def publish(bus: Any, payload: Any, *, source: str = "test") -> Any:
    """Put one event on the bus as a producing service would (keyed by its topic's key)."""
    from lastmile.common.bus import OutgoingRecord

    envelope = payload.envelope(source)
    await bus.publish([OutgoingRecord(payload.TOPIC.name, payload.key().encode(), envelope.to_bytes())])
    return envelope


async def create_common_tables(db: Any) -> None:
    """The outbox and inbox tables, for tests of the mechanics without a service's migrations."""
    from lastmile.common.inbox import inbox_table
    from lastmile.common.outbox import outbox_table

    async with db.engine.begin() as conn:
        for table in (outbox_table, inbox_table):
            await conn.run_sync(table.create, checkfirst=True)


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def chromium_page(profile: Path, viewport: dict[str, int] | None = None) -> AsyncIterator[Any]:
    """A page in Debian's headless Chromium driven by Playwright (which never downloads a browser here), with a
    fresh profile in `profile`."""
    import shutil

    from playwright.async_api import async_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        raise RuntimeError("Chromium is not installed: `make system-deps` installs Debian's chromium package")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900, **(viewport or {})},  # type: ignore[arg-type]
        )
        try:
            yield await context.new_page()
        finally:
            await context.close()


def secret_forms(secret: str) -> list[str]:
    """The ways a secret can show up in text: as given, a phone number without its `+` or in digits only, an
    email address in lower case, a key without its `lm_…_` prefix (what the log redaction would leave)."""
    import re

    forms = {secret}
    if re.fullmatch(r"\+?[\d\s().\-]{7,}", secret):
        digits = re.sub(r"\D", "", secret)
        forms |= {secret.lstrip("+"), digits}
    if "@" in secret:
        forms.add(secret.lower())
    body = re.sub(r"^lm_[a-z]+_", "", secret)
    if len(body) >= 16:
        forms.add(body)
    return sorted(f for f in forms if len(f) >= 7)


def find_leaks(secrets: Iterable[str], **sources: Iterable[str]) -> list[str]:
    """Where any of `secrets` (phone numbers, email addresses, API and device keys, tokens) appears in the texts
    of `sources` (e.g. `logs=[...lines...], metrics=[...exposition texts...]`): one line per finding, empty when
    none. Reusable for any run: a test gathers log lines and /metrics texts and asserts `find_leaks(...) == []`.
    """
    needles = {form: secret for secret in secrets if secret for form in secret_forms(secret)}
    found = []
    for source, texts in sources.items():
        for n, text in enumerate(texts):
            for form, secret in needles.items():
                if form in text:
                    at = text.index(form)
                    excerpt = text[max(0, at - 60) : at + len(form) + 20].replace("\n", " ")
                    found.append(f"{source}[{n}] contains {secret!r}: …{excerpt}…")
    return found
