"""The OsmAnd protocol, as Traccar serves it on port 5055, so that phones running Traccar Client (or OsmAnd, or
any app speaking it) report to us without software of ours.

Two forms (https://www.traccar.org/osmand/):
- query or form parameters on any method and path: `id` (or `deviceid`), `lat`, `lon` (or `location=lat,lon`),
  `timestamp` (Unix seconds or milliseconds, ISO 8601, or `yyyy-MM-dd HH:mm:ss` in UTC), `speed` in **knots**,
  `bearing` (or `heading`), `altitude`, `accuracy` (m), `batt` (%), `valid`;
- the JSON body of Traccar Client 9 and later: `{"location": {"timestamp", "coords": {"latitude", "longitude",
  "accuracy", "speed" (m/s), "heading", "altitude"}, "battery": {"level": 0..1}}, "device_id"}`; `location` may
  also be a list, or the body `{"locations": [...]}` (the SDK's batch form).

The device id is the one we issued (`dev_…`); its key comes as a `key` parameter (Traccar Client users put it
in the server URL: `http://host:5055/?key=lm_dev_…`) or an `Authorization: Bearer` header. Well-formed reports
from a known device get 200 even when a position is refused (too old, say): the refusal is counted, and a
client that retried it would block its own queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from lastmile.common import metrics
from lastmile.common.auth import bearer_from_header
from lastmile.common.db import is_transient
from lastmile.common.errors import PROBLEM_JSON, LastmileError
from lastmile.common.serve import uvicorn_config
from lastmile.common.web import PayloadTooLarge
from lastmile.tracker import handlers
from lastmile.tracker.deps import Deps
from lastmile.tracker.domain import KNOT_MPS, PingIn, rejection_for
from lastmile.tracker.handlers_pings import Item, count_rejected

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
SECONDS_UNTIL = 2**31  # Traccar's rule: a smaller number is seconds, a larger one milliseconds


class Malformed(ValueError):
    pass


@dataclass(frozen=True)
class Report:
    device_id: str | None
    key: str | None
    items: list[Item]


def parse(params: Mapping[str, str], body: Any, received_at: datetime) -> Report:
    """One request's positions (each parsed, or why not), its device id and its key."""
    if isinstance(body, dict):
        locations = body.get("locations", body.get("location"))
        if isinstance(locations, dict):
            locations = [locations]
        if not isinstance(locations, list) or not locations:
            raise Malformed("no location in the JSON body")
        device = body.get("device_id") or params.get("id") or params.get("deviceid")
        items = [_from_json(loc, received_at) for loc in locations]
        return Report(_text(device), params.get("key"), items)
    if body is not None:
        raise Malformed("the JSON body must be an object")
    device = params.get("id") or params.get("deviceid")
    return Report(device, params.get("key"), [_from_params(params, received_at)])


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _from_params(p: Mapping[str, str], received_at: datetime) -> Item:
    if p.get("valid", "true").lower() in ("false", "0"):
        return "no_fix"
    try:
        lat, lon = p.get("lat"), p.get("lon")
        if (lat is None or lon is None) and "location" in p:
            lat, lon = p["location"].split(",", 1)
        if lat is None or lon is None:
            return "no_fix"
        fields = {
            "lat": float(lat),
            "lon": float(lon),
            "recorded_at": _time(p.get("timestamp"), received_at),
            "speed_mps": _number(p.get("speed"), KNOT_MPS),
            "heading": _number(p.get("bearing", p.get("heading"))),
            "altitude_m": _number(p.get("altitude")),
            "accuracy_m": _number(p.get("accuracy")),
            "battery": _number(p.get("batt")),
        }
    except ValueError:
        return "invalid"
    return _ping(fields)


def _from_json(location: Any, received_at: datetime) -> Item:
    if not isinstance(location, dict):
        return "invalid"
    location = location.get("location", location)  # batch items may be wrapped once more
    coords, battery = location.get("coords"), location.get("battery") or {}
    if not isinstance(coords, dict) or coords.get("latitude") is None or coords.get("longitude") is None:
        return "no_fix"
    try:
        level = _known(battery.get("level") if isinstance(battery, dict) else None)
        fields = {
            "lat": float(coords["latitude"]),
            "lon": float(coords["longitude"]),
            "recorded_at": _time(location.get("timestamp"), received_at),
            "speed_mps": _known(coords.get("speed")),
            "heading": _known(coords.get("heading")),
            "altitude_m": _known(coords.get("altitude"), allow_negative=True),
            "accuracy_m": _known(coords.get("accuracy")),
            "battery": None if level is None else level * 100,
        }
    except (TypeError, ValueError):
        return "invalid"
    return _ping(fields)


def _ping(fields: dict[str, Any]) -> Item:
    try:
        return PingIn.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        return rejection_for(exc.errors())  # type: ignore[arg-type]


def _number(value: str | None, factor: float = 1.0) -> float | None:
    return None if value is None or value == "" else float(value) * factor


def _known(value: Any, *, allow_negative: bool = False) -> float | None:
    """The background-location SDK says 'unknown' with -1."""
    if value is None:
        return None
    number = float(value)
    return None if number < 0 and not allow_negative else number


def _time(value: Any, received_at: datetime) -> datetime:
    if value is None or value == "":
        return received_at  # Traccar's rule: no time, the time it arrived
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        number = int(text)
        return datetime.fromtimestamp(number if abs(number) < SECONDS_UNTIL else number / 1000, UTC)
    parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------
# The listener


ALLOWED = frozenset({"GET", "HEAD", "POST", "PUT"})
ROUTE = "/{path:path}"  # the route label of the listener's HTTP metrics (every path is the same route)
PLAIN = [(b"content-type", b"text/plain; charset=utf-8")]


class OsmAndApp:
    """The OsmAnd port's ASGI app, on every path: no framework between uvicorn and the ingestor (a phone's
    report is a query string and a reply code; a router, request objects and exception middlewares cost more
    than the rest of the request). It does what the service's HTTP edge does for this port: body limit (413),
    request metrics."""

    def __init__(self, deps: Deps, max_body: int = MAX_BODY) -> None:
        self.deps, self.max_body = deps, max_body
        self.service = deps.settings.service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan here: the tracker app's own owns everything this app uses
        started = time.perf_counter()
        method: str = scope["method"]
        status = 500
        try:
            status, headers, text = await self._answer(scope, receive, method)
            body = text.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            metrics.HTTP_REQUESTS.labels(self.service, method, ROUTE, str(status)).inc()
            metrics.HTTP_LATENCY.labels(self.service, method, ROUTE).observe(time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, method: str) -> Answer:
        if method not in ALLOWED:
            return 405, [*PLAIN, (b"allow", b"GET, HEAD, POST, PUT")], "Method Not Allowed"
        content_type = authorization = ""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return _too_large(self.max_body, scope["path"])
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return 400, PLAIN, "Bad request: the client went away"
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return _too_large(self.max_body, scope["path"])
        try:
            query = scope["query_string"].decode("latin-1")
            params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
            received = _params(params, content_type, body)
            parsed = parse(received[0], received[1], self.deps.clock.now())
        except (Malformed, ValueError, UnicodeDecodeError) as exc:
            count_rejected("invalid")
            return 400, PLAIN, f"Bad request: {exc}"
        return await self._ingest(parsed, authorization)

    async def _ingest(self, parsed: Report, authorization: str) -> Answer:
        deps = self.deps
        try:
            key = parsed.key or bearer_from_header(authorization)
            device = await handlers.authenticate_device(key, deps, parsed.device_id)
            wait = deps.rates.take(device.id)
            if wait > 0:
                count_rejected("rate_limited", len(parsed.items))
                retry = str(max(1, round(wait))).encode()
                return 429, [*PLAIN, (b"retry-after", retry)], "Too many requests"
            await deps.ingestor.submit(device, parsed.items, "osmand")
        except LastmileError as exc:
            if exc.status == 401:
                count_rejected("unauthorized", len(parsed.items))
            extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            return exc.status, [*PLAIN, *extra], exc.detail or exc.title
        except Exception as exc:
            if not is_transient(exc):
                raise
            return 503, [*PLAIN, (b"retry-after", b"5")], "Unavailable; retry"
        return 200, [], ""


Answer = tuple[int, list[tuple[bytes, bytes]], str]


def _too_large(limit: int, path: str) -> Answer:
    error = PayloadTooLarge(f"The body exceeds {limit} bytes")
    problem = error.problem(path).model_dump_json(exclude_none=True)
    return 413, [(b"content-type", PROBLEM_JSON.encode()), (b"connection", b"close")], problem


def create_osmand_app(deps: Deps) -> Any:
    """An ASGI app that takes OsmAnd reports on every path."""
    return OsmAndApp(deps)


def _params(params: dict[str, str], content_type: str, body: bytes) -> tuple[dict[str, str], Any]:
    if not body.strip():
        return params, None
    if "json" in content_type or body.lstrip().startswith(b"{"):
        return params, json.loads(body)
    return {**dict(parse_qsl(body.decode("ascii"), keep_blank_values=True)), **params}, None


class OsmAndListener:
    """The OsmAnd port: a second HTTP server in the tracker's process, beside its API."""

    def __init__(self, deps: Deps) -> None:
        settings = deps.settings
        self.deps = deps
        self.host, self.port = settings.osmand_host or settings.host, settings.osmand_port
        self.server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.port < 0:
            return
        # Bound here, so that a port in use fails the start with an OSError (uvicorn would exit the process).
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn_config(create_osmand_app(self.deps), self.host, self.port)
        config.lifespan = "off"  # the tracker app's lifespan owns everything this app uses
        self.server = uvicorn.Server(config)
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="tracker-osmand")
        while not self.server.started and not self._task.done():  # noqa: ASYNC110 (uvicorn offers a flag only)
            await asyncio.sleep(0.02)
        log.info("OsmAnd listener on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None and self._task is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)
