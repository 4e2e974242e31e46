"""The customer's tracking page: HTML around the tracking view (Jinja2, every value escaped), its little map in
inline SVG, live updates by server-sent events, and no third-party resources unless map tiles are set."""

from __future__ import annotations

import functools
import secrets
from datetime import UTC, datetime, tzinfo
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from lastmile.tracker.domain_views import TrackingView


@functools.cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("lastmile.tracker", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = clock
    env.filters["stops_text"] = stops_text
    return env


def _zone(name: str | None) -> tzinfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


def clock(value: datetime | None, zone: str | None = None, now: datetime | None = None) -> str:
    """'14:35', or 'Tue 3 Dec, 14:35' when not today, in the customer's zone (the page's script then shows it
    in the phone's own zone)."""
    if value is None:
        return ""
    tz = _zone(zone)
    local, today = value.astimezone(tz), (now or datetime.now(UTC)).astimezone(tz).date()
    text = local.strftime("%H:%M") if local.date() == today else local.strftime("%a %-d %b, %H:%M")
    return text + (" UTC" if tz is UTC else "")


def stops_text(before: int | None) -> str:
    if before is None:
        return ""
    if before == 0:
        return "Your stop is next."
    return "1 stop before yours." if before == 1 else f"{before} stops before yours."


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def render_tracking(view: TrackingView, nonce: str) -> str:
    template = _env().get_template("track.html")
    return template.render(view=view, nonce=nonce, initial=view.model_dump(mode="json"))


def render_not_found() -> str:
    return _env().get_template("not_found.html").render()


def headers(nonce: str | None, tiles_url: str | None) -> dict[str, str]:
    """Nothing but our own script, styles and updates; images only from the tile server, when set; the token
    in the URL never leaks through a referrer, a cache or a frame."""
    images = "'self' data:"
    if tiles_url:
        parts = urlsplit(tiles_url)
        images += f" {parts.scheme}://{parts.netloc}"
    own = f"'nonce-{nonce}'" if nonce else "'none'"
    policy = (
        f"default-src 'none'; script-src {own}; style-src {own}; img-src {images}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Robots-Tag": "noindex, nofollow",
    }
