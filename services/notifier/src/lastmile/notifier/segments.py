"""SMS segments: how many parts a text costs in GSM-7 or UCS-2 (3GPP TS 23.038), and fitting a text to one.

GSM-7 carries 160 septets in one part, 153 per part once split (the rest is the concatenation header); the
extension characters (`^{}\\[~]|€` and form feed) take two septets, and an escape pair is never split. Any
character outside the GSM-7 alphabet switches the whole message to UCS-2: 70 UTF-16 units in one part, 67 per
part once split, and a surrogate pair (an emoji) is never split either.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int


def is_gsm7(text: str) -> bool:
    return GSM7.issuperset(text)


def count(text: str) -> Segments:
    if is_gsm7(text):
        units = (
            len(text) + sum(1 for c in text if c in GSM7_EXTENSION)
            if GSM7_EXTENSION.intersection(text)
            else len(text)
        )
        if units <= 160:  # one part: no need to place the escape pairs
            return Segments("GSM-7", units, 1)
        sizes = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return Segments("GSM-7", sum(sizes), _parts(sizes, single=160, multi=153))
    sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return Segments("UCS-2", sum(sizes), _parts(sizes, single=70, multi=67))


def _parts(sizes: Sequence[int], *, single: int, multi: int) -> int:
    total = sum(sizes)
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in sizes:  # characters that take two units stay whole within one part
        if used + size > multi:
            parts, used = parts + 1, 0
        used += size
    return parts


def fold_to_gsm7(text: str) -> str:
    """Accented letters GSM-7 lacks (ê, ç, á …) as their base letter, typographic quotes and dashes as ASCII;
    what cannot be folded is kept (and the text stays UCS-2)."""
    if is_gsm7(text):
        return text
    out = []
    for c in text:
        if c in GSM7_BASIC or c in GSM7_EXTENSION:
            out.append(c)
            continue
        replacement = _TYPOGRAPHY.get(c)
        if replacement is None:
            base = unicodedata.normalize("NFKD", c)
            stripped = "".join(b for b in base if not unicodedata.combining(b))
            replacement = stripped if stripped and all(b in GSM7_BASIC for b in stripped) else c
        out.append(replacement)
    return "".join(out)


_TYPOGRAPHY = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u202f": " ",
}


def fit(variants: Iterable[str]) -> str:
    """The first variant (longest first) that fits one part as it is or folded to GSM-7 (the whole message
    without its accents beats a curter one with them); else the variant that costs the fewest parts.
    Variants are taken one at a time (a generator's later ones are never made when an earlier one fits)."""
    seen = []
    for candidate in variants:
        seen.append(candidate)
        if count(candidate).count == 1:
            return candidate
        folded = fold_to_gsm7(candidate)
        if folded != candidate and count(folded).count == 1:
            return folded
    options = [*seen, *(fold_to_gsm7(v) for v in seen)]
    return min(options, key=lambda v: (count(v).count, -len(v)))
