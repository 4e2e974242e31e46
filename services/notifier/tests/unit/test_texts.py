"""Templates in four languages, SMS segment counting (GSM-7 and UCS-2), and email escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lastmile.notifier import segments, templates
from lastmile.notifier.domain import KINDS, Facts

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LINK = "https://track.lastmile.example/track/Gq3v9ZbJ4kXw1mN8rT2yU6pL0sD5fH7e"
FACTS = Facts(START, START + timedelta(hours=2), START + timedelta(minutes=45))


def render(
    kind: str, language: str, merchant: str = "Acme", name: str = "Ada Lovelace", **kw: object
) -> templates.Rendered:
    return templates.render(
        kind, language, merchant=merchant, name=name, link=LINK, unsubscribe_link="https://n.example/u/t",
        facts=FACTS, tz=BERLIN, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


class TestSegments:
    def test_gsm7_fits_160_in_one_part_and_153_per_part_after(self) -> None:
        assert segments.count("a" * 160) == segments.Segments("GSM-7", 160, 1)
        assert segments.count("a" * 161).count == 2
        assert segments.count("a" * 306).count == 2
        assert segments.count("a" * 307).count == 3

    def test_extension_characters_take_two_septets(self) -> None:
        assert segments.count("€" * 80) == segments.Segments("GSM-7", 160, 1)
        assert segments.count("€" * 80 + "a").count == 2
        # 152 plain septets then an escape pair: the pair moves whole to the second part.
        assert segments.count("a" * 152 + "{" + "a" * 152).count == 3

    def test_a_character_outside_gsm7_makes_the_message_ucs2(self) -> None:
        assert segments.count("ê" + "a" * 69) == segments.Segments("UCS-2", 70, 1)
        assert segments.count("ê" + "a" * 70).count == 2
        assert segments.count("ê" * 134).count == 2
        assert segments.count("ê" * 135).count == 3

    def test_an_emoji_takes_two_ucs2_units_and_is_never_split(self) -> None:
        assert segments.count("😀" * 35) == segments.Segments("UCS-2", 70, 1)
        assert segments.count("a" * 66 + "😀" + "a" * 66).count == 3  # 66 | 😀 + 65 | 1 (pair kept whole)

    def test_gsm7_accents_stay_and_others_fold(self) -> None:
        assert segments.is_gsm7("äöüßéèàñ")
        assert segments.fold_to_gsm7("bientôt façon día “ok”") == 'bientot facon dia "ok"'

    def test_fit_prefers_the_long_text_then_the_folded_one_then_the_short_one(self) -> None:
        long, short = "x" * 150, "y" * 20
        assert segments.fit([long, short]) == long
        assert segments.fit(["ô" + "x" * 100, short]) == "o" + "x" * 100
        assert segments.fit(["x" * 170, short]) == short


class TestTemplates:
    @pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_message_names_the_merchant_and_the_link_in_one_sms_part(
        self, language: str, kind: str
    ) -> None:
        r = render(kind, language, merchant="Müller & Söhne Versand")
        for text in (r.sms, r.text, r.subject):
            assert "Müller & Söhne" in text or "Muller & Sohne" in text
        assert LINK in r.sms
        assert LINK in r.text
        assert LINK in r.html
        assert segments.count(r.sms).count == 1, r.sms

    def test_languages_speak_their_own_words_and_times(self) -> None:
        assert (
            render("scheduled", "de").sms
            == f"Acme: Ihre Lieferung ist für Di 1. Dez zwischen 10:00 und 12:00 Uhr geplant. Verfolgen: {LINK}"
        )
        assert "entre 10h00 et 12h00" in render("scheduled", "fr").text
        assert "hacia las 10:45" in render("eta_changed", "es").text
        assert render("delivered", "en").subject == "Your Acme parcel has been delivered"
        assert templates.language_of("de-AT") == "de"
        assert templates.language_of("pt-BR") == "en"

    def test_a_failed_attempt_offers_another_day_or_a_pickup_point(self) -> None:
        r = render("failed", "en")
        assert "Choose another day or a pickup point" in r.html
        assert "pickup point" in r.sms

    def test_merchant_and_customer_text_is_escaped_in_html(self) -> None:
        r = render("delivered", "en", merchant='<script>alert("x")</script>', name="<b>Eve</b>")
        assert "<script>" not in r.html
        assert "&lt;script&gt;" in r.html
        assert "<b>Eve" not in r.html
        assert "&lt;b&gt;Eve" in r.html
        assert "Hello <b>Eve</b>," in r.text  # the plain part is plain

    def test_a_long_merchant_name_is_clipped_in_sms_only(self) -> None:
        name = "The Extraordinarily Long Named Emporium of Fine Things"
        r = render("out_for_delivery", "en", merchant=name)
        assert segments.count(r.sms).count == 1
        assert name in r.subject
        assert name not in r.sms

    def test_a_merchant_override_wins_and_falls_back_when_too_long(self) -> None:
        custom = templates.Override(
            sms="$merchant: hi $name, parcel $arrival. $link", subject="Hi from $merchant"
        )
        r = render("out_for_delivery", "en", override=custom)
        assert r.sms == f"Acme: hi Ada, parcel around 10:45. {LINK}"
        assert r.subject == "Hi from Acme"
        verbose = templates.Override(sms="$merchant " + "blah " * 40 + "$link")
        assert render("delivered", "en", override=verbose).sms == render("delivered", "en").sms

    def test_placeholders_are_checked(self) -> None:
        templates.validate("$merchant ${link}")
        with pytest.raises(ValueError, match="unknown placeholders"):
            templates.validate("$merchant.__class__ $secret")
        with pytest.raises(ValueError, match="malformed"):
            templates.validate("costs 5$")


def test_placeholders_fill_by_string_templates_rules() -> None:
    from string import Template

    from lastmile.notifier.templates import _fill

    values = {"merchant": "Acme $name", "name": "Ada", "link": "http://x/$$"}
    for text in (
        "$$5 for ${name}",
        "$unknown stays",
        "${bad and $ alone $",
        "a$$$name",
        "${merchant}$merchantx",
    ):
        want = " ".join(Template(text).safe_substitute(values).split())
        assert _fill(text, values) == want
    assert _fill("Hi $name,  see\n$link", values) == "Hi Ada, see http://x/$$"
