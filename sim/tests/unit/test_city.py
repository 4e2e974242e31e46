"""The simulated city's fleet: every depot can serve every kind of order the merchants send."""

from __future__ import annotations

import pytest

from lastmile.sim.city import BERLIN
from lastmile.sim.day import MERCHANTS


@pytest.mark.parametrize("vehicles", [6, 14, 40])
def test_every_depot_has_a_vehicle_for_every_skill_orders_ask_for(vehicles: int) -> None:
    fleet = BERLIN.fleet(vehicles)
    wanted = {skill for merchant in MERCHANTS for skill, _ in merchant.skills}
    assert len(fleet) == vehicles
    for depot in range(len(BERLIN.depots)):
        skills = {s for d, kind in fleet if d == depot for s in kind.skills}
        assert wanted <= skills, (depot, skills)


def test_the_mix_keeps_its_proportions() -> None:
    fleet = BERLIN.fleet(40)
    bikes = sum(1 for _, kind in fleet if kind.profile == "cargo_bike")
    assert bikes == 6  # 15 % of 40
    shares = BERLIN.demand_shares()
    for depot, share in enumerate(shares):  # vehicles where the customers are
        assert abs(sum(1 for d, _ in fleet if d == depot) - share * 40) <= 2


def test_every_depot_has_a_van_that_sets_out_after_the_same_day_cutoff() -> None:
    for depot in range(len(BERLIN.depots)):
        assert any(d == depot and kind.shift_start >= "12:00" for d, kind in BERLIN.fleet(14))
