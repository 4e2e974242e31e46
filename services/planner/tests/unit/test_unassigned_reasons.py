"""Every reason an order is left out, each produced by a case built for it (VROOM itself gives none)."""

from __future__ import annotations

from typing import Any


def reason(plan: Any, order_id: str) -> str:
    return str(plan.unassigned[order_id][0])


class TestUnassignedReasons:
    def test_outside_the_depots_service_area(self, make: Any, planner: Any) -> None:
        plan = planner([make.van()], [make.job("far", lat=53.55, lon=10.0)])
        assert reason(plan, "far") == "outside_service_area"

    def test_no_vehicle_at_all(self, make: Any, planner: Any) -> None:
        plan = planner([], [make.job("o1")])
        assert reason(plan, "o1") == "no_vehicle"

    def test_ready_only_after_its_window_closes(self, make: Any, planner: Any) -> None:
        plan = planner(
            [make.van()], [make.job("slow", windows=((make.at(10), make.at(12)),), ready_at=make.at(13))]
        )
        assert reason(plan, "slow") == "ready_too_late"

    def test_every_window_already_closed_when_re_planning(self, make: Any, planner: Any) -> None:
        plan = planner(
            [make.van()], [make.job("gone", windows=((make.at(9), make.at(10)),))], now=make.at(11)
        )
        assert reason(plan, "gone") == "window_passed"

    def test_no_vehicle_has_the_skills(self, make: Any, planner: Any) -> None:
        plan = planner([make.van()], [make.job("cold", skills=("cold_chain",))])
        assert reason(plan, "cold") == "no_vehicle_with_skills"

    def test_too_large_for_any_vehicle(self, make: Any, planner: Any) -> None:
        plan = planner([make.van(capacity_kg=100)], [make.job("piano", weight_kg=400)])
        assert reason(plan, "piano") == "too_large"

    def test_too_bulky_for_any_vehicle(self, make: Any, planner: Any) -> None:
        plan = planner([make.van(capacity_volume_l=500)], [make.job("sofa", volume_l=2000)])
        assert reason(plan, "sofa") == "too_large"

    def test_window_outside_every_shift(self, make: Any, planner: Any) -> None:
        plan = planner([make.van()], [make.job("late", windows=((make.at(19), make.at(21)),))])
        assert reason(plan, "late") == "outside_shifts"

    def test_window_unreachable_from_the_depot_in_time(self, make: Any, planner: Any) -> None:
        # ~11 km away (≈ 30 min by van); the window closes five minutes after the shift starts
        early = make.job("early", lat=52.62, windows=((make.at(8), make.at(8, 5)),))
        plan = planner([make.van()], [early])
        assert reason(plan, "early") == "window_unreachable"

    def test_round_trip_beyond_every_vehicles_distance_limit(self, make: Any, planner: Any) -> None:
        plan = planner([make.van(max_distance_km=5)], [make.job("far", lat=52.62)])
        assert reason(plan, "far") == "beyond_vehicle_limits"

    def test_every_vehicle_at_its_stop_limit(self, make: Any, planner: Any) -> None:
        plan = planner([make.van(max_stops=2)], [make.job(f"o{i}", lat=52.52 + i * 0.002) for i in range(3)])
        assert [r for r, _ in plan.unassigned.values()] == ["stop_limit_reached"]

    def test_capacity_exhausted_when_the_vehicle_cannot_reload(self, make: Any, planner: Any) -> None:
        plan = planner([make.van(capacity_parcels=2, reloads=False)], [make.job(f"o{i}") for i in range(3)])
        assert [r for r, _ in plan.unassigned.values()] == ["capacity_exhausted"]

    def test_fleet_time_exhausted_when_the_shift_is_full(self, make: Any, planner: Any) -> None:
        jobs = [
            make.job(f"o{i}", lat=52.52 + i * 0.002, windows=((make.at(8), make.at(9)),), service_s=1200)
            for i in range(5)
        ]
        plan = planner([make.van(shift_start="08:00", shift_end="09:30")], jobs)
        assert plan.unassigned
        assert {r for r, _ in plan.unassigned.values()} == {"fleet_time_exhausted"}
