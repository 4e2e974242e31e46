"""What the customer sees: the vehicle only when their stop is near, a timeline, a map that fits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lastmile.tracker import domain_views as views
from lastmile.tracker.domain_views import MapSettings, OrderFacts, Position, StopFacts

NOW = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
ORDER = OrderFacts(
    reference="A-1",
    merchant="Shop",
    created_at=NOW - timedelta(days=1),
    lat=48.1,
    lon=11.5,
    address=["Main St 1"],
    window=(NOW, NOW + timedelta(hours=2)),
    timezone="Europe/Berlin",
)
NEAR = Position(48.105, 11.5, NOW - timedelta(seconds=20))


def out(before: int, **more: object) -> StopFacts:
    return StopFacts(
        status="out",
        scheduled_at=NOW - timedelta(hours=12),
        out_at=NOW - timedelta(hours=1),
        eta=NOW + timedelta(minutes=25),
        stops_before=before,
        **more,  # type: ignore[arg-type]
    )


class TestVehicle:
    def test_is_shown_when_the_customers_stop_is_among_the_next_few(self) -> None:
        view = views.tracking_view(ORDER, out(2), NEAR, NOW, MapSettings(stops_shown=3))
        assert view.vehicle is not None
        assert view.vehicle.direction == "north"
        assert view.vehicle.description == "The driver is 560 m north of your address."
        assert view.map.vehicle_x is not None
        assert view.map.vehicle_y is not None
        assert abs(view.map.vehicle_x - 160) < 1
        assert view.map.vehicle_y < 160

    def test_is_hidden_while_other_customers_come_first(self) -> None:
        view = views.tracking_view(ORDER, out(3), NEAR, NOW, MapSettings(stops_shown=3))
        assert view.vehicle is None
        assert view.map.vehicle_x is None
        assert view.stops_before == 3

    def test_is_hidden_when_its_position_is_stale_or_the_order_is_done(self) -> None:
        stale = Position(NEAR.lat, NEAR.lon, NOW - timedelta(hours=1))
        assert views.tracking_view(ORDER, out(0), stale, NOW, MapSettings()).vehicle is None
        done = StopFacts(status="delivered", scheduled_at=NOW, completed_at=NOW, stops_before=0)
        assert views.tracking_view(ORDER, done, NEAR, NOW, MapSettings()).vehicle is None

    def test_stays_inside_the_map_far_away_and_tiles_line_up_when_set(self) -> None:
        far = Position(48.6, 12.3, NOW)
        geometry = views.map_geometry(
            ORDER.lat, ORDER.lon, far, MapSettings(tiles_url="https://t/{z}/{x}/{y}.png")
        )
        assert geometry.vehicle_x is not None
        assert geometry.vehicle_y is not None
        assert 160 - 121 <= geometry.vehicle_x <= 160 + 121
        assert 160 - 121 <= geometry.vehicle_y <= 160 + 121
        assert geometry.tiles
        assert all(t.href.startswith("https://t/") for t in geometry.tiles)
        assert views.map_geometry(ORDER.lat, ORDER.lon, far, MapSettings()).tiles == []


class TestTimeline:
    def test_marks_steps_reached_up_to_the_current_one(self) -> None:
        view = views.tracking_view(ORDER, out(1, arriving_at=NOW), NEAR, NOW, MapSettings())
        assert view.status == "arriving"
        assert [(s.status, s.reached, s.current) for s in view.timeline] == [
            ("received", True, False),
            ("scheduled", True, False),
            ("out_for_delivery", True, False),
            ("arriving", True, True),
            ("delivered", False, False),
        ]

    def test_a_failed_delivery_ends_the_timeline_with_the_reason(self) -> None:
        failed = StopFacts(
            status="failed", scheduled_at=NOW, out_at=NOW, completed_at=NOW, failure_reason="not_at_home"
        )
        view = views.tracking_view(ORDER, failed, None, NOW, MapSettings())
        assert view.timeline[-1].status == "failed"
        assert view.timeline[-1].current
        assert view.failure == "Nobody was at home."
        assert view.eta is None

    def test_an_order_not_yet_routed_shows_its_window(self) -> None:
        view = views.tracking_view(ORDER, None, None, NOW, MapSettings())
        assert view.status == "received"
        assert view.promised_window is not None
        assert view.promised_window.start == NOW
