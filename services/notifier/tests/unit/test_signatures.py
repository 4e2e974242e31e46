"""Signatures and consent: Standard Webhooks (checked by an independent implementation), Twilio's request
signature (Twilio's own published test vectors), unsubscribe tokens, SMS keywords, the SSRF guard."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from lastmile.notifier import consent, sms, webhooks


class TestStandardWebhooks:
    def test_our_signature_verifies_with_the_standardwebhooks_package(self) -> None:
        secret = webhooks.new_secret()
        body = b'{"type":"delivery.delivered","data":{"order_id":"ord_1"}}'
        headers = webhooks.headers(secret, "msg_1", body)
        assert Webhook(secret).verify(body, headers)["data"]["order_id"] == "ord_1"

    def test_a_changed_body_or_another_secret_fails(self) -> None:
        secret = webhooks.new_secret()
        headers = webhooks.headers(secret, "msg_1", b"{}")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(b'{"x":1}', headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(webhooks.new_secret()).verify(b"{}", headers)

    def test_the_spec_example(self) -> None:
        # The example in the Standard Webhooks specification.
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"test": 2432232314}'
        expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        assert webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


class TestTwilioSignature:
    URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
    PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234", "From": "+14158675309",
              "To": "+18005551212"}  # fmt: skip

    def test_twilios_published_vector(self) -> None:
        assert sms.signature("12345", self.URL, self.PARAMS.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="

    def test_repeated_parameters_are_sorted_by_value(self) -> None:
        params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
        assert sms.signature("12345", self.URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="

    def test_validation_needs_the_right_token_and_url(self) -> None:
        good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        assert sms.valid_signature("12345", self.URL, self.PARAMS.items(), good)
        assert not sms.valid_signature("54321", self.URL, self.PARAMS.items(), good)
        assert not sms.valid_signature("12345", self.URL + "&x=1", self.PARAMS.items(), good)
        assert not sms.valid_signature("12345", self.URL, self.PARAMS.items(), None)

    def test_delivery_states_only_move_forward(self) -> None:
        assert sms.later("sent", "delivered")
        assert not sms.later("delivered", "sent")
        assert sms.later(None, "queued")


class TestConsent:
    KEY = b"k" * 32

    def test_an_unsubscribe_token_names_its_channel_and_address_and_cannot_be_forged(self) -> None:
        hashed = consent.address_hash("email", " Ada@Example.com ")
        token = consent.unsubscribe_token(self.KEY, "email", hashed)
        assert consent.read_unsubscribe_token(self.KEY, token) == ("email", hashed)
        assert consent.read_unsubscribe_token(b"other" * 8, token) is None
        assert consent.read_unsubscribe_token(self.KEY, token[:-2] + "AA") is None
        assert consent.read_unsubscribe_token(self.KEY, "garbage") is None

    def test_addresses_are_normalised_before_hashing(self) -> None:
        assert consent.address_hash("sms", "+44 7700 900123") == consent.address_hash("sms", "+447700900123")
        assert consent.address_hash("email", "ADA@example.com") == consent.address_hash(
            "email", "ada@example.com"
        )
        assert consent.address_hash("sms", "+447700900123") != consent.address_hash("email", "+447700900123")

    @pytest.mark.parametrize(("body", "word"), [("STOP", "stop"), (" stop ", "stop"), ("Unsubscribe.", "stop"),
                                                ("quit", "stop"), ("START", "start"), ("please stop it", None),
                                                ("thanks", None)])  # fmt: skip
    def test_sms_keywords(self, body: str, word: str | None) -> None:
        assert consent.keyword(body) == word

    def test_twilios_opt_out_type_wins(self) -> None:
        assert consent.keyword("Arrêt", "STOP") == "stop"


class TestSsrfGuard:
    @pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                         "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
                                         "224.0.0.1"])  # fmt: skip
    def test_non_public_addresses_are_refused(self, address: str) -> None:
        assert not webhooks.is_public(address)

    def test_public_addresses_pass(self) -> None:
        assert webhooks.is_public("93.184.216.34")
        assert webhooks.is_public("2606:2800:220:1:248:1893:25c8:1946")

    @pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "https://user:pw@example.com/"])
    def test_urls_we_do_not_call(self, url: str) -> None:
        with pytest.raises(webhooks.UnsafeUrl):
            webhooks.check_url(url)
