"""Every validation rule, each naming the bad field with a JSON pointer."""

from typing import Any

import pytest

WINDOW = {"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}
RECIPIENT = {"name": "Ada", "phone": "+447700900123", "email": "ada@example.com"}
DEST = {"lat": 52.5208, "lon": 13.4095}

# (what changes in a valid order, the pointer the problem must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {"colour": "red"}, "#/colour"),
    ("unknown nested field", {"recipient": {**RECIPIENT, "age": 3}}, "#/recipient/age"),
    ("empty reference", {"reference": ""}, "#/reference"),
    ("reference with edge spaces", {"reference": " A-1 "}, "#/reference"),
    ("reference too long", {"reference": "A" * 101}, "#/reference"),
    ("unknown kind", {"kind": "teleport"}, "#/kind"),
    ("empty depot id", {"depot_id": ""}, "#/depot_id"),
    ("missing recipient", {"recipient": None}, "#/recipient"),
    ("recipient without name", {"recipient": {"phone": "+447700900123"}}, "#/recipient/name"),
    ("phone not E.164", {"recipient": {**RECIPIENT, "phone": "07700 900123"}}, "#/recipient/phone"),
    ("email without at", {"recipient": {**RECIPIENT, "email": "ada.example.com"}}, "#/recipient/email"),
    ("language not BCP 47", {"recipient": {**RECIPIENT, "language": "English"}}, "#/recipient/language"),
    ("unknown channel", {"recipient": {**RECIPIENT, "channels": ["pigeon"]}}, "#/recipient/channels/0"),
    ("channel twice", {"recipient": {**RECIPIENT, "channels": ["sms", "sms"]}}, "#/recipient/channels"),
    ("sms without phone", {"recipient": {"name": "Ada", "channels": ["sms"]}}, "#/recipient/phone"),
    ("email without address", {"recipient": {"name": "Ada", "channels": ["email"]}}, "#/recipient/email"),
    ("latitude out of range", {"destination": {"lat": 91, "lon": 13.4}}, "#/destination/lat"),
    ("longitude out of range", {"destination": {"lat": 52.5, "lon": -181}}, "#/destination/lon"),
    ("country not ISO", {"destination": {**DEST, "country": "Germany"}}, "#/destination/country"),
    (
        "unknown location type",
        {"destination": {**DEST, "location_type": "boat"}},
        "#/destination/location_type",
    ),
    (
        "pickup point without id",
        {"destination": {**DEST, "location_type": "pickup_point"}},
        "#/destination/pickup_point_id",
    ),
    (
        "pickup point id at home",
        {"destination": {**DEST, "pickup_point_id": "pp-1"}},
        "#/destination/pickup_point_id",
    ),
    (
        "too many address lines",
        {"destination": {**DEST, "address_lines": ["x"] * 6}},
        "#/destination/address_lines",
    ),
    (
        "access notes too long",
        {"destination": {**DEST, "access_notes": "x" * 501}},
        "#/destination/access_notes",
    ),
    ("neither windows nor level", {"time_windows": None}, "#/time_windows"),
    ("both windows and level", {"service_level": "next_day"}, "#/service_level"),
    ("unknown service level", {"time_windows": None, "service_level": "yesterday"}, "#/service_level"),
    ("no windows", {"time_windows": []}, "#/time_windows"),
    (
        "window without zone",
        {"time_windows": [{"start": "2030-12-02T10:00:00", "end": WINDOW["end"]}]},
        "#/time_windows/0/start",
    ),
    (
        "window ending before it starts",
        {"time_windows": [{"start": WINDOW["end"], "end": WINDOW["start"]}]},
        "#/time_windows/0/end",
    ),
    (
        "window in the past",
        {"time_windows": [{"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T12:00:00Z"}]},
        "#/time_windows/0/end",
    ),
    (
        "window longer than a week",
        {"time_windows": [{"start": WINDOW["start"], "end": "2030-12-20T10:00:00Z"}]},
        "#/time_windows/0",
    ),
    (
        "overlapping windows",
        {
            "time_windows": [
                WINDOW,
                {"start": "2030-12-02T17:00:00+01:00", "end": "2030-12-02T19:00:00+01:00"},
            ]
        },
        "#/time_windows/1/start",
    ),
    ("no parcels", {"parcels": []}, "#/parcels"),
    ("zero parcels", {"parcels": [{"count": 0}]}, "#/parcels/0/count"),
    ("negative weight", {"parcels": [{"weight_kg": -1}]}, "#/parcels/0/weight_kg"),
    ("negative service time", {"service_time_s": -5}, "#/service_time_s"),
    ("service time of a day", {"service_time_s": 86400}, "#/service_time_s"),
    ("priority above 100", {"priority": 101}, "#/priority"),
    ("skill with capitals", {"skills": ["Cold Chain"]}, "#/skills/0"),
    ("skill twice", {"skills": ["heavy", "heavy"]}, "#/skills"),
    ("ready after the last window", {"ready_at": "2030-12-02T19:00:00+01:00"}, "#/ready_at"),
    ("ready without zone", {"ready_at": "2030-12-02T09:00:00"}, "#/ready_at"),
    ("metadata nested", {"metadata": {"a": {"b": 1}}}, "#/metadata/a"),
    ("metadata value too long", {"metadata": {"a": "x" * 501}}, "#/metadata/a"),
    ("metadata with 51 keys", {"metadata": {f"k{i}": i for i in range(51)}}, "#/metadata"),
]


@pytest.mark.parametrize(("name", "change", "pointer"), INVALID, ids=[c[0] for c in INVALID])
async def test_refuses_an_invalid_order_naming_the_field(
    intake: Any, an_order: Any, name: str, change: dict[str, Any], pointer: str
) -> None:
    order = {k: v for k, v in an_order(**change).items() if v is not None}
    reply = await intake.client.post("/v1/orders", json=order, headers=intake.headers)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json()
    assert problem["code"] == "validation-error"
    assert pointer in [e["pointer"] for e in problem["errors"]], problem["errors"]
    assert intake.events() == []


async def test_names_every_bad_field_at_once(intake: Any, an_order: Any) -> None:
    order = an_order(priority=-1, recipient={"name": "", "phone": "123"}, destination={"lat": 100, "lon": 13})
    reply = await intake.client.post("/v1/orders", json=order, headers=intake.headers)
    pointers = {e["pointer"] for e in reply.json()["errors"]}
    assert {"#/priority", "#/recipient/name", "#/recipient/phone", "#/destination/lat"} <= pointers


async def test_refuses_a_body_that_is_not_json(intake: Any) -> None:
    reply = await intake.client.post(
        "/v1/orders", content=b"{not json", headers={**intake.headers, "content-type": "application/json"}
    )
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
