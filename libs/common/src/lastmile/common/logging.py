"""Structured logs with the event and order in context, and no personal data: phones and emails are masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_context: ContextVar[dict[str, str] | None] = ContextVar("lastmile_log_context", default=None)

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
# E.164 and the usual national spellings: a run of 7+ digits, allowing spaces, dots, dashes and brackets.
PHONE = re.compile(r"(?<![\w/.:-])\+?\(?\d[\d\s().\-]{6,}\d(?![\w/.:-])")
SECRET = re.compile(r"\b(lm_(?:live|dev|ops)_)[A-Za-z0-9_\-]{8,}")


def redact(text: str) -> str:
    """Mask emails, phone numbers and API keys: logs are read by many, and kept long."""
    text = EMAIL.sub("[email]", text)
    text = SECRET.sub(r"\1[redacted]", text)
    return PHONE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    # Timestamps, ids and counts are digit runs too; only runs shaped like phone numbers are masked.
    if 7 <= len(digits) <= 15 and not _looks_like_time(match.group(0)):
        return "[phone]"
    return match.group(0)


def _looks_like_time(s: str) -> bool:
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", s.strip()))


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Bind values (event_id, order_id, topic…) to every log line inside the block."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in values.items() if v is not None})
    token = _context.set(current)
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": getattr(record, "service", self.service),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(_context.get() or {})
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: redact(str(v)) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        context = _context.get()
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Install the redacting formatter on the root logger (idempotent; the last call wins)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_lastmile", False):
            root.removeHandler(old)
    handler._lastmile = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "sqlalchemy.engine", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
