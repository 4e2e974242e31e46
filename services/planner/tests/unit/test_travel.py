"""The built-in travel times: great-circle distance × detour, a speed per profile that varies by hour."""

from __future__ import annotations

from lastmile.planner.domain import great_circle_m
from lastmile.planner.travel import CoordinateTravelTimes

POINTS = [(52.52, 13.40), (52.53, 13.41), (52.60, 13.30)]


def test_distance_is_the_great_circle_times_the_detour() -> None:
    matrix = CoordinateTravelTimes(detour=1.4).compute(POINTS, "van", 11)
    assert matrix.distances[0, 2] == round(great_circle_m(POINTS[0], POINTS[2]) * 1.4)
    assert matrix.distances.tolist() == matrix.distances.T.tolist()
    assert matrix.durations[1, 1] == 0


def test_vans_are_slower_in_the_rush_hour_and_cargo_bikes_are_not() -> None:
    travel = CoordinateTravelTimes()
    assert (
        travel.compute(POINTS, "van", 8).durations[0, 2] > travel.compute(POINTS, "van", 11).durations[0, 2]
    )
    assert (
        travel.compute(POINTS, "cargo_bike", 8).durations[0, 2]
        == travel.compute(POINTS, "cargo_bike", 11).durations[0, 2]
    )


def test_a_cargo_bike_is_slower_than_a_van_off_peak() -> None:
    travel = CoordinateTravelTimes()
    assert (
        travel.compute(POINTS, "cargo_bike", 11).durations[0, 2]
        > travel.compute(POINTS, "van", 11).durations[0, 2]
    )
