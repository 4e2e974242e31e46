"""A city to deliver in: depots, a mixed fleet, and customers placed where people live (clustered)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lastmile.sim.geo import distance_m, offset


@dataclass(frozen=True)
class Neighbourhood:
    name: str
    lat: float
    lon: float
    weight: float  # share of the city's households
    spread_m: float


@dataclass(frozen=True)
class DepotSite:
    name: str
    lat: float
    lon: float
    service_radius_km: float = 14.0


@dataclass(frozen=True)
class VehicleKind:
    profile: str
    capacity_parcels: int
    capacity_kg: float
    shift_start: str
    shift_end: str
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class City:
    name: str
    timezone: str
    depots: tuple[DepotSite, ...]
    neighbourhoods: tuple[Neighbourhood, ...]
    fleet_mix: tuple[tuple[VehicleKind, float], ...]  # kind and its share of the fleet
    speeds_kmh: dict[str, float] = field(default_factory=dict)

    def customer(self, rng: random.Random) -> tuple[float, float]:
        """A household: a neighbourhood by its weight, then a Gaussian scatter around its centre."""
        hood = rng.choices(self.neighbourhoods, weights=[n.weight for n in self.neighbourhoods])[0]
        return offset((hood.lat, hood.lon), rng.gauss(0, hood.spread_m), rng.gauss(0, hood.spread_m))

    def fleet(self, vehicles: int) -> list[tuple[int, VehicleKind]]:
        """`vehicles` in the mix's proportions (the first kind takes up the rounding), each kind spread over the
        depots in proportion to their shares of the customers, except that every depot first gets one of each
        kind with a skill when the fleet allows it (else a depot's customers needing cold chain would have no
        vehicle at all)."""
        depots = len(self.depots)
        counts = [round(share * vehicles) for _, share in self.fleet_mix]
        covered = vehicles >= depots * (1 + sum(1 for kind, _ in self.fleet_mix if kind.skills))
        if covered:
            counts = [
                max(n, depots) if k.skills else n for n, (k, _) in zip(counts, self.fleet_mix, strict=True)
            ]
        counts[0] = max(0, counts[0] + vehicles - sum(counts))
        kinds = [kind for n, (kind, _) in zip(counts, self.fleet_mix, strict=True) for _ in range(n)][
            :vehicles
        ]
        shares = self.demand_shares()
        fleet: list[tuple[int, VehicleKind]] = []
        for kind in dict.fromkeys(
            kinds
        ):  # each kind spread in proportion: every depot gets its afternoon vans
            mine = [0] * depots
            for k in range(kinds.count(kind)):
                if covered and kind.skills and k < depots:
                    depot = k
                else:
                    depot = max(range(depots), key=lambda d: (shares[d] * (k + 1) - mine[d], -d))
                mine[depot] += 1
                fleet.append((depot, kind))
        return fleet

    def demand_shares(self) -> list[float]:
        """Each depot's share of the households: the neighbourhoods' weights, each to its nearest depot."""
        weights = [0.0] * len(self.depots)
        for hood in self.neighbourhoods:
            nearest = min(
                range(len(self.depots)),
                key=lambda d: distance_m((hood.lat, hood.lon), (self.depots[d].lat, self.depots[d].lon)),
            )
            weights[nearest] += hood.weight
        total = sum(weights) or 1.0
        return [w / total for w in weights]


VAN_EARLY = VehicleKind("van", 160, 900, "07:00", "17:00")
VAN_LATE = VehicleKind("van", 160, 900, "10:00", "21:00")
# The afternoon wave: parcels of the same-day orders (cutoff 12:00) are loaded on vans that have not left yet
# (the planner gives a parcel still at the depot only to a vehicle that has not set out).
VAN_PM = VehicleKind("van", 160, 900, "12:30", "21:00")
VAN_COLD = VehicleKind("van", 120, 800, "07:00", "17:00", ("cold_chain",))
CAR = VehicleKind("car", 70, 350, "08:00", "18:00", ("id_check",))
CARGO_BIKE = VehicleKind("cargo_bike", 40, 120, "08:00", "18:00")

BERLIN = City(
    name="Berlin",
    timezone="Europe/Berlin",
    depots=(
        DepotSite("Berlin Mitte", 52.5200, 13.4000),
        DepotSite("Berlin Tempelhof", 52.4650, 13.3850),
    ),
    neighbourhoods=(
        Neighbourhood("Mitte", 52.5230, 13.4010, 1.2, 900),
        Neighbourhood("Prenzlauer Berg", 52.5390, 13.4240, 1.6, 1100),
        Neighbourhood("Friedrichshain", 52.5150, 13.4540, 1.4, 1000),
        Neighbourhood("Kreuzberg", 52.4980, 13.4100, 1.5, 1000),
        Neighbourhood("Neukölln", 52.4810, 13.4350, 1.6, 1100),
        Neighbourhood("Schöneberg", 52.4850, 13.3550, 1.1, 900),
        Neighbourhood("Tempelhof", 52.4650, 13.3850, 0.8, 1000),
        Neighbourhood("Wedding", 52.5500, 13.3600, 1.1, 1000),
        Neighbourhood("Moabit", 52.5280, 13.3400, 0.8, 800),
        Neighbourhood("Charlottenburg", 52.5060, 13.3050, 1.0, 1200),
        Neighbourhood("Lichtenberg", 52.5150, 13.4950, 0.7, 1200),
        Neighbourhood("Steglitz", 52.4570, 13.3230, 0.6, 1200),
    ),
    fleet_mix=(
        (VAN_EARLY, 0.4),
        (VAN_LATE, 0.1),
        (VAN_PM, 0.15),
        (VAN_COLD, 0.1),
        (CAR, 0.1),
        (CARGO_BIKE, 0.15),
    ),
    speeds_kmh={"van": 28.0, "car": 32.0, "cargo_bike": 16.0},
)
