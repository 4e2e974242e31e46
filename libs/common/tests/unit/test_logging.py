import json
import logging

from lastmile.common.logging import JsonFormatter, log_context, redact


class TestRedaction:
    def test_masks_emails(self) -> None:
        assert redact("sent to ada.lovelace+x@example.co.uk today") == "sent to [email] today"

    def test_masks_e164_and_national_phone_numbers(self) -> None:
        assert redact("sms +447700900123 ok") == "sms [phone] ok"
        assert redact("call 030 1234 5678") == "call [phone]"

    def test_masks_api_keys(self) -> None:
        assert redact("key lm_live_AbCdEfGhIjKlMnOp") == "key lm_live_[redacted]"

    def test_leaves_ids_and_timestamps_alone(self) -> None:
        text = "order ord_01a21b5b2e7 at 2026-11-27T10:00:00+01:00 took 1234 ms"
        assert redact(text) == text


class TestJsonFormatter:
    def test_carries_context_and_never_the_phone(self) -> None:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "to %s", ("+4915112345678",), None)
        with log_context(event_id="e-1", order_id="ord_1"):
            line = json.loads(JsonFormatter("planner").format(record))
        assert line["message"] == "to [phone]"
        assert line["event_id"] == "e-1"
        assert line["order_id"] == "ord_1"
        assert line["service"] == "planner"
