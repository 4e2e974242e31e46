"""Small geometry on the sphere: distances, bearings, points along a leg, GPS noise in metres."""

from __future__ import annotations

import math
import random

EARTH_M = 6_371_008.8


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(min(1.0, h)))


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return (math.degrees(math.atan2(y, x)) + 360) % 360


def offset(point: tuple[float, float], north_m: float, east_m: float) -> tuple[float, float]:
    lat = point[0] + north_m / EARTH_M * 180 / math.pi
    lon = point[1] + east_m / (EARTH_M * math.cos(math.radians(point[0]))) * 180 / math.pi
    return (lat, lon)


def along(a: tuple[float, float], b: tuple[float, float], fraction: float) -> tuple[float, float]:
    """The point `fraction` of the way from a to b; city blocks make legs bend, so the path is an L-shape."""
    f = max(0.0, min(1.0, fraction))
    corner = (a[0], b[1])
    first = distance_m(a, corner)
    total = first + distance_m(corner, b)
    if total == 0:
        return a
    walked = f * total
    if walked <= first:
        t = walked / first if first else 1.0
        return (a[0] + (corner[0] - a[0]) * t, a[1] + (corner[1] - a[1]) * t)
    t = (walked - first) / (total - first)
    return (corner[0] + (b[0] - corner[0]) * t, corner[1] + (b[1] - corner[1]) * t)


def path_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Length of the L-shaped path `along` follows."""
    corner = (a[0], b[1])
    return distance_m(a, corner) + distance_m(corner, b)


def noisy(point: tuple[float, float], rng: random.Random, sigma_m: float) -> tuple[float, float]:
    return offset(point, rng.gauss(0, sigma_m), rng.gauss(0, sigma_m))
