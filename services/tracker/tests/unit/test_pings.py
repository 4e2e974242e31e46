"""Which pings are accepted, which are suspect, and how the OsmAnd protocol's two forms read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lastmile.tracker import domain, osmand
from lastmile.tracker.domain import Limits, PingIn, Track

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LIMITS = Limits()


def ping(seconds: float, lat: float = 48.1, lon: float = 11.5, accuracy: float | None = None) -> PingIn:
    return PingIn(lat=lat, lon=lon, recorded_at=NOW + timedelta(seconds=seconds), accuracy_m=accuracy)


class TestTime:
    def test_refuses_the_future_beyond_skew_and_the_too_old(self) -> None:
        assert domain.judge_time(ping(60), NOW, LIMITS) is None
        assert domain.judge_time(ping(600), NOW, LIMITS) == "future"
        assert domain.judge_time(ping(-2 * 86400), NOW, LIMITS) == "too_old"

    def test_null_island_is_no_fix(self) -> None:
        assert domain.judge_time(ping(0, lat=0, lon=0), NOW, LIMITS) == "no_fix"


class TestJumps:
    def test_an_impossible_jump_is_suspect_and_the_next_plausible_fix_is_ok(self) -> None:
        outcome, track = domain.classify(Track(), ping(0), LIMITS)
        assert outcome == "ok"
        outcome, track = domain.classify(track, ping(1, lat=48.1 + 470 / 111_200), LIMITS)  # 470 m in 1 s
        assert outcome == "suspect"
        assert track.good is not None
        assert track.good.at == NOW
        outcome, track = domain.classify(track, ping(2, lat=48.1 + 20 / 111_200), LIMITS)
        assert outcome == "ok"

    def test_a_vehicle_really_elsewhere_is_believed_after_a_few_agreeing_fixes(self) -> None:
        _, track = domain.classify(Track(), ping(0), LIMITS)
        far = 48.1 + 2000 / 111_200
        outcomes = []
        for k in range(1, 5):
            outcome, track = domain.classify(track, ping(k, lat=far + k * 10 / 111_200), LIMITS)
            outcomes.append(outcome)
        assert outcomes == ["suspect", "suspect", "ok", "ok"]

    def test_accuracy_gives_slack(self) -> None:
        _, track = domain.classify(Track(), ping(0, accuracy=150), LIMITS)
        outcome, _ = domain.classify(track, ping(1, lat=48.1 + 250 / 111_200, accuracy=150), LIMITS)
        assert outcome == "ok"

    def test_a_ping_not_newer_than_the_latest_is_late_and_moves_nothing(self) -> None:
        _, track = domain.classify(Track(), ping(10), LIMITS)
        outcome, after = domain.classify(track, ping(5, lat=49.0), LIMITS)
        assert outcome == "late"
        assert after is track


class TestRejections:
    def test_names_range_errors_apart_from_malformed_input(self) -> None:
        with pytest.raises(ValidationError) as bad_range:
            PingIn.model_validate({"lat": 91, "lon": 0, "recorded_at": NOW.isoformat()})
        assert domain.rejection_for(bad_range.value.errors()) == "out_of_range"  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as malformed:
            PingIn.model_validate({"lat": "north", "lon": 0})
        assert domain.rejection_for(malformed.value.errors()) == "invalid"  # type: ignore[arg-type]

    def test_images_are_known_by_their_bytes(self) -> None:
        assert domain.image_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
        assert domain.image_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
        assert domain.image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
        assert domain.image_type(b"<svg onload=alert(1)>") is None


class TestOsmAnd:
    def test_reads_query_parameters_with_speed_in_knots(self) -> None:
        params = {
            "id": "dev_1",
            "key": "lm_dev_x",
            "lat": "48.1",
            "lon": "11.5",
            "timestamp": str(int(NOW.timestamp())),
            "speed": "10",
            "bearing": "90.5",
            "altitude": "520",
            "accuracy": "8",
            "batt": "77",
        }
        report = osmand.parse(params, None, NOW)
        assert (report.device_id, report.key) == ("dev_1", "lm_dev_x")
        [item] = report.items
        assert isinstance(item, PingIn)
        assert item.recorded_at == NOW
        assert item.speed_mps == pytest.approx(5.144, abs=0.001)
        assert (item.heading, item.altitude_m, item.accuracy_m, item.battery) == (90.5, 520, 8, 77)

    @pytest.mark.parametrize(
        "timestamp",
        [
            str(int(NOW.timestamp() * 1000)),
            "2026-12-01T09:00:00Z",
            "2026-12-01 09:00:00",
            "2026-12-01T10:00:00+01:00",
        ],
    )
    def test_reads_every_timestamp_form(self, timestamp: str) -> None:
        [item] = osmand.parse({"id": "d", "lat": "1", "lon": "2", "timestamp": timestamp}, None, NOW).items
        assert isinstance(item, PingIn)
        assert item.recorded_at == NOW

    def test_a_report_without_time_is_timed_on_arrival_and_location_may_come_whole(self) -> None:
        [item] = osmand.parse({"id": "d", "location": "48.1,11.5"}, None, NOW).items
        assert isinstance(item, PingIn)
        assert (item.lat, item.lon, item.recorded_at) == (48.1, 11.5, NOW)

    def test_invalid_fixes_and_garbage_are_named(self) -> None:
        assert osmand.parse({"id": "d", "lat": "1", "lon": "2", "valid": "false"}, None, NOW).items == [
            "no_fix"
        ]
        assert osmand.parse({"id": "d", "lat": "x", "lon": "2"}, None, NOW).items == ["invalid"]
        assert osmand.parse({"id": "d", "lat": "95", "lon": "2"}, None, NOW).items == ["out_of_range"]
        assert osmand.parse({"id": "d"}, None, NOW).items == ["no_fix"]

    def test_reads_the_json_body_of_traccar_client(self) -> None:
        body = {
            "location": {
                "timestamp": "2026-12-01T09:00:00.000Z",
                "coords": {
                    "latitude": 48.1,
                    "longitude": 11.5,
                    "accuracy": 4.3,
                    "speed": 3.5,
                    "heading": -1,
                    "altitude": 103,
                },
                "is_moving": True,
                "odometer": 0,
                "battery": {"level": 0.88, "is_charging": False},
                "activity": {"type": "in_vehicle"},
            },
            "device_id": "dev_1",
        }
        report = osmand.parse({"key": "k"}, body, NOW)
        [item] = report.items
        assert report.device_id == "dev_1"
        assert isinstance(item, PingIn)
        assert (item.speed_mps, item.heading, item.accuracy_m) == (3.5, None, 4.3)  # m/s here; -1 is unknown
        assert item.battery == pytest.approx(88)

    def test_reads_a_batch_of_locations(self) -> None:
        one = {"timestamp": "2026-12-01T09:00:00Z", "coords": {"latitude": 48.1, "longitude": 11.5}}
        two = {"timestamp": "2026-12-01T09:00:05Z", "coords": {"latitude": 48.2, "longitude": 11.5}}
        report = osmand.parse({"id": "dev_1"}, {"location": [one, {"location": two}]}, NOW)
        assert [p.lat for p in report.items if isinstance(p, PingIn)] == [48.1, 48.2]
        with pytest.raises(osmand.Malformed):
            osmand.parse({}, {"hello": "world"}, NOW)
