import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from lastmile.common import events as ev
from lastmile.common.ids import uuid4_strings


def test_every_payload_travels_on_a_known_topic_with_its_key_field() -> None:
    for type_, model in ev.EVENT_TYPES.items():
        assert type_.startswith("lastmile.")
        assert model.TOPIC in ev.TOPICS
        assert model.TOPIC.key in model.model_fields, f"{type_} lacks its key field {model.TOPIC.key}"


def test_an_envelope_round_trips_to_its_typed_payload() -> None:
    payload = ev.Arrived(order_id="ord_1", vehicle_id="veh_1", at=datetime(2026, 11, 27, 10, tzinfo=UTC))
    envelope = payload.envelope("tracker")
    decoded, typed = ev.decode(envelope.to_bytes())
    assert decoded.id == envelope.id
    assert decoded.subject == "ord_1"
    assert typed == payload


def test_a_serialised_envelope_has_the_bytes_of_the_model_one() -> None:
    payload = ev.Arrived(order_id='ord_"1', vehicle_id="veh_1", at=datetime(2026, 11, 27, 10, tzinfo=UTC))
    at, id_ = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    fast = payload.serialised("tracker", time=at, id=id_)
    assert fast.to_bytes() == payload.envelope("tracker", time=at, id=id_).to_bytes()
    assert (
        fast.to_bytes()
        == payload.serialised("tracker", payload.model_dump_json(), time=at, id=id_).to_bytes()
    )
    decoded, typed = ev.decode(fast.to_bytes())
    assert (decoded.id, decoded.type, typed) == (fast.id, fast.type, payload)


def test_an_envelope_writer_gives_the_model_envelopes_bytes_for_text_ids() -> None:
    at = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    write = ev.EnvelopeWriter(ev.Arrived, "tracker", at)
    for id_ in uuid4_strings(3):
        payload = ev.Arrived(order_id=f'ord_"{id_}', vehicle_id="veh_1", at=at)
        fast = write(payload.order_id, payload.model_dump_json(), id_)
        assert fast.to_bytes() == payload.envelope("tracker", time=at, id=uuid.UUID(id_)).to_bytes()
        assert (fast.id, fast.type) == (id_, "lastmile.delivery.arrived")


def test_consumers_ignore_fields_added_later() -> None:
    data = {"order_id": "ord_1", "vehicle_id": "veh_1", "at": "2026-11-27T10:00:00Z", "added_in_v2": 1}
    envelope = ev.Envelope(
        id=uuid.uuid4(),
        type="lastmile.delivery.arrived",
        source="x",
        subject="ord_1",
        time=datetime.now(UTC),
        data=data,
    )
    assert isinstance(envelope.payload(), ev.Arrived)


def test_an_unknown_type_is_refused() -> None:
    envelope = ev.Envelope(
        id=uuid.uuid4(), type="lastmile.nope", source="x", subject="s", time=datetime.now(UTC), data={}
    )
    with pytest.raises(ev.UnknownEventType):
        envelope.payload()


def test_an_envelope_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError):
        ev.Envelope(id=uuid.uuid4(), type="t", source="x", subject="s", time=datetime(2026, 1, 1), data={})
