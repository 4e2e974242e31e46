"""Message texts per language (en, de, fr, es) and per merchant, rendered to SMS (one part where possible)
and to email (plain text and HTML, every merchant and customer text escaped). No I/O.

Templates use `$name` placeholders (string.Template: no attribute access, unlike str.format): `$merchant`,
`$name`, `$link`, `$date`, `$window`, `$arrival`, `$eta`.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from string import Template
from zoneinfo import ZoneInfo

from lastmile.notifier import segments
from lastmile.notifier.catalog import CATALOG, LANGUAGES, Language, Texts
from lastmile.notifier.domain import FAILED, Facts

SMS_MERCHANT_MAX = 30


@dataclass(frozen=True)
class Override:
    """A merchant's own wording for one kind and language; None keeps the default."""

    sms: str | None = None
    subject: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Rendered:
    sms: str
    subject: str
    text: str  # the email's plain-text part
    html: str  # the email's HTML part


def language_of(tag: str | None) -> str:
    """`de-AT` → `de`; anything unknown → `en`."""
    base = (tag or "en").replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


def render(
    kind: str,
    language: str,
    *,
    merchant: str,
    name: str,
    link: str,
    unsubscribe_link: str,
    facts: Facts,
    tz: ZoneInfo,
    override: Override | None = None,
) -> Rendered:
    lang = CATALOG[language_of(language)]
    texts = lang.kinds[kind]
    override = override or Override()
    values = _values(lang, merchant, name, link, facts, tz)
    sms_values = {**values, "merchant": _clip(merchant or "Lastmile", SMS_MERCHANT_MAX)}
    variants = [override.sms] if override.sms else []
    variants += [texts.sms, texts.sms_short]
    sms = segments.fit(_fill(v, sms_values) for v in variants)
    subject = _fill(override.subject or texts.subject, values).replace("\n", " ")[:250]
    paragraph = _fill(override.text or texts.text, values)
    button = lang.failed_button if kind == FAILED else lang.button
    return Rendered(
        sms=sms,
        subject=subject,
        text=_plain(lang, values, paragraph, button, link, unsubscribe_link),
        html=_html(lang, values, subject, paragraph, button, link, unsubscribe_link),
    )


def validate(template: str) -> None:
    """Raises ValueError naming an unknown placeholder or a malformed `$`."""
    allowed = {"merchant", "name", "link", "date", "window", "arrival", "eta"}
    t = Template(template)
    if not t.is_valid():
        raise ValueError("malformed placeholder: use $name or ${name}, and $$ for a dollar sign")
    unknown = set(t.get_identifiers()) - allowed
    if unknown:
        raise ValueError(f"unknown placeholders: {', '.join(sorted(unknown))}; allowed: {sorted(allowed)}")


def _values(
    lang: Language, merchant: str, name: str, link: str, facts: Facts, tz: ZoneInfo
) -> dict[str, str]:
    first = (name or "").split(" ")[0]
    window = ""
    date = ""
    if facts.window_start is not None and facts.window_end is not None:
        start, end = facts.window_start.astimezone(tz), facts.window_end.astimezone(tz)
        window = lang.window.format(start=lang.clock(start), end=lang.clock(end))
        date = lang.date(start)
    eta = lang.clock(facts.eta.astimezone(tz)) if facts.eta else ""
    if eta:
        arrival = lang.around.format(time=eta)
    elif window:
        arrival = window
    else:
        arrival = lang.today
    return {
        "merchant": merchant or "Lastmile",
        "name": first or lang.customer,
        "link": link,
        "date": date,
        "window": window,
        "arrival": arrival,
        "eta": eta,
    }


def _fill(template: str, values: dict[str, str]) -> str:
    """`Template(template).safe_substitute(values)`, whitespace collapsed; the template parsed once."""
    text = "".join(raw if name is None else values.get(name, raw) for raw, name in _pieces(template))
    return " ".join(text.split())


@functools.lru_cache(maxsize=4096)
def _pieces(template: str) -> tuple[tuple[str, str | None], ...]:
    """The template as (text, placeholder name or None) pieces, by string.Template's own pattern: `$$` is a
    dollar sign, an unknown or malformed placeholder stays as written (safe_substitute's rules)."""
    pieces: list[tuple[str, str | None]] = []
    pos = 0
    for m in Template.pattern.finditer(template):
        pieces.append((template[pos : m.start()], None))
        name = m.group("named") or m.group("braced")
        if name:
            pieces.append((m.group(0), name))
        else:
            pieces.append(("$" if m.group("escaped") is not None else m.group(0), None))
        pos = m.end()
    pieces.append((template[pos:], None))
    return tuple(pieces)


def _greeting(lang: Language, values: dict[str, str]) -> str:
    return _fill(lang.greeting, values).replace(" ,", ",")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "."


def _plain(
    lang: Language, values: dict[str, str], paragraph: str, button: str, link: str, unsubscribe: str
) -> str:
    footer = _fill(lang.footer, values)
    return (
        f"{_greeting(lang, values)}\n\n{paragraph}\n\n{button}: {link}\n\n"
        f"-- \n{footer}\n{lang.unsubscribe}: {unsubscribe}\n"
    )


def _html(
    lang: Language,
    values: dict[str, str],
    subject: str,
    paragraph: str,
    button: str,
    link: str,
    unsubscribe: str,
) -> str:
    e = html.escape
    return f"""<!DOCTYPE html>
<html lang="{e(lang.code)}"><head><meta charset="utf-8"><title>{e(subject)}</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;color:#1f2933;max-width:560px;margin:0 auto;padding:16px">
<p>{e(_greeting(lang, values))}</p>
<p>{e(paragraph)}</p>
<p><a href="{e(link, quote=True)}" style="display:inline-block;background:#1a56db;color:#ffffff;padding:10px 18px;border-radius:4px;text-decoration:none">{e(button)}</a></p>
<hr style="border:none;border-top:1px solid #e4e7eb">
<p style="font-size:12px;color:#616e7c">{e(_fill(lang.footer, values))}<br>
<a href="{e(unsubscribe, quote=True)}" style="color:#616e7c">{e(lang.unsubscribe)}</a></p>
</body></html>
"""


__all__ = ["LANGUAGES", "Override", "Rendered", "Texts", "language_of", "render", "validate"]
