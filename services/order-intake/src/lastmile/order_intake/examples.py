"""Examples for the OpenAPI document: one per request body and per answer of every route."""

from __future__ import annotations

from typing import Any

ORDER_WITH_WINDOW: dict[str, Any] = {
    "reference": "A-1001",
    "kind": "delivery",
    "recipient": {
        "name": "Ada Lovelace",
        "phone": "+447700900123",
        "email": "ada@example.com",
        "language": "en",
        "channels": ["sms", "email"],
    },
    "destination": {
        "lat": 52.5208,
        "lon": 13.4095,
        "address_lines": ["Karl-Liebknecht-Str. 1", "3rd floor"],
        "postal_code": "10178",
        "city": "Berlin",
        "country": "DE",
        "location_type": "office",
        "access_notes": "Reception on the left",
    },
    "time_windows": [{"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}],
    "parcels": [{"count": 1, "weight_kg": 2.5, "volume_l": 12}],
    "service_time_s": 180,
    "priority": 10,
    "skills": ["id_check"],
    "ready_at": "2030-12-02T08:00:00+01:00",
    "metadata": {"shop_order": "SO-77"},
}

RETURN_NEXT_DAY: dict[str, Any] = {
    "reference": "R-2002",
    "kind": "return",
    "recipient": {"name": "Alan Turing", "email": "alan@example.com", "language": "de"},
    "destination": {
        "lat": 52.5251,
        "lon": 13.3694,
        "location_type": "pickup_point",
        "pickup_point_id": "pp-berlin-hbf-7",
    },
    "service_level": "next_day",
    "parcels": [{"count": 2, "weight_kg": 4}],
}

CREATE_EXAMPLES = {
    "delivery in a window": {"summary": "A delivery within a time window", "value": ORDER_WITH_WINDOW},
    "return, next day": {"summary": "A return pickup, next-day service level", "value": RETURN_NEXT_DAY},
}

ORDER_VIEW: dict[str, Any] = {
    "id": "ord_0193a4b2c5d67e8f9a0b1c2d3e4f5061",
    "reference": "A-1001",
    "kind": "delivery",
    "status": "received",
    "version": 1,
    "depot_id": "dep_0193a4b2c5d67e8f9a0b1c2d3e4f0000",
    "recipient": {
        "name": "Ada Lovelace",
        "phone": "+447700900123",
        "email": "ada@example.com",
        "language": "en",
        "channels": ["sms", "email"],
        "timezone": "Europe/Berlin",
    },
    "destination": {
        "lat": 52.5208,
        "lon": 13.4095,
        "address_lines": ["Karl-Liebknecht-Str. 1", "3rd floor"],
        "postal_code": "10178",
        "city": "Berlin",
        "country": "DE",
        "location_type": "office",
        "pickup_point_id": None,
        "access_notes": "Reception on the left",
    },
    "time_windows": [{"start": "2030-12-02T10:00:00+01:00", "end": "2030-12-02T18:00:00+01:00"}],
    "service_level": None,
    "parcels": [{"count": 1, "weight_kg": 2.5, "volume_l": 12.0}],
    "service_time_s": 180,
    "priority": 10,
    "skills": ["id_check"],
    "ready_at": "2030-12-02T08:00:00+01:00",
    "metadata": {"shop_order": "SO-77"},
    "tracking_url": "https://track.example.com/track/Zk3x9vQ2mP8rT1wY6uA0cE4hJ7nL5sB3",
    "created_at": "2030-12-01T15:04:05.123000Z",
    "updated_at": "2030-12-01T15:04:05.123000Z",
}

BATCH = {
    "orders": [ORDER_WITH_WINDOW, {**ORDER_WITH_WINDOW, "reference": "A-1002", "recipient": {"name": ""}}]
}
BATCH_RESULT = {
    "created": 1,
    "rejected": 1,
    "items": [
        {
            "index": 0,
            "reference": "A-1001",
            "outcome": "created",
            "id": ORDER_VIEW["id"],
            "tracking_url": ORDER_VIEW["tracking_url"],
        },
        {
            "index": 1,
            "reference": "A-1002",
            "outcome": "rejected",
            "problem": {
                "type": "https://lastmile.dev/problems/validation-error",
                "title": "Invalid request",
                "status": 422,
                "detail": "The request has invalid fields; see errors.",
                "code": "validation-error",
                "errors": [
                    {
                        "pointer": "#/orders/1/recipient/name",
                        "detail": "String should have at least 1 character",
                    }
                ],
            },
        },
    ],
}

CHANGE_EXAMPLES = {
    "new window": {
        "summary": "Move the delivery window",
        "value": {
            "time_windows": [{"start": "2030-12-03T14:00:00+01:00", "end": "2030-12-03T16:00:00+01:00"}]
        },
    },
    "new recipient": {
        "summary": "Deliver to a neighbour",
        "value": {"recipient": {"name": "Grace Hopper", "phone": "+4915112345678"}},
    },
}

CANCEL_EXAMPLES = {
    "cancel": {"summary": "Cancel with a reason", "value": {"reason": "customer changed their mind"}}
}

HISTORY = [
    {"status": "received", "at": "2030-12-01T15:04:05.123000Z", "detail": {}},
    {
        "status": "scheduled",
        "at": "2030-12-01T15:09:00Z",
        "detail": {
            "event": "lastmile.delivery.scheduled",
            "event_id": "6f1c1c7e-3b1a-4c59-9d1e-2b8a9f0e4d11",
        },
    },
]

TRACKING = {"order_id": ORDER_VIEW["id"], "tracking_url": ORDER_VIEW["tracking_url"]}
PAGE = {"items": [ORDER_VIEW], "next_cursor": "b3JkXzAxOTNhNGIyYzVkNjdlOGY5YTBiMWMyZDNlNGY1MDYx"}

MERCHANT = {"name": "Acme Books"}
MERCHANT_CREATED = {
    "id": "mer_0193a4b2c5d67e8f9a0b1c2d3e4f1111",
    "name": "Acme Books",
    "api_key_id": "key_0193a4b2c5d67e8f9a0b1c2d3e4f2222",
    "api_key": "lm_live_3q2-7wEXAMPLEnot-a-real-key-9pQ0aZ1bY2cX3dW4",
}
KEY = {"label": "rotation 2030-12"}
KEY_CREATED = {
    "id": "key_0193a4b2c5d67e8f9a0b1c2d3e4f3333",
    "api_key": "lm_live_Zq8EXAMPLEnot-a-real-key-1aB2cD3eF4gH5iJ6",
}


def answer(example: Any, description: str = "Success") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": example}}}
