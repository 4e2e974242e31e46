"""Fields are added, never renamed: the models against the schemas committed under docs/events/."""

from __future__ import annotations

import json
from pathlib import Path

from lastmile.common.catalog import breaking_changes, schemas

DOCS = Path(__file__).resolve().parents[4] / "docs" / "events"


def test_no_committed_event_field_was_removed_renamed_or_retyped() -> None:
    current = schemas()
    committed = {p.stem: json.loads(p.read_text()) for p in DOCS.glob("*.json")}
    assert committed, f"no committed schemas under {DOCS}; run `make events-doc`"
    problems = [
        f"{t}: {p}" for t, old in committed.items() for p in breaking_changes(old, current.get(t, {}))
    ]
    assert not problems, "breaking event changes (add a new field or a new topic instead):\n" + "\n".join(
        problems
    )


def test_every_event_type_is_in_the_catalog() -> None:
    missing = set(schemas()) - {p.stem for p in DOCS.glob("*.json")}
    assert not missing, f"run `make events-doc` to add {sorted(missing)}"


def test_the_check_catches_a_rename() -> None:
    old = {"properties": {"order_id": {"type": "string"}}}
    new = {"properties": {"orderId": {"type": "string"}}}
    assert breaking_changes(old, new) == ["order_id: removed or renamed"]
