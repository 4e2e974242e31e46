"""Solution quality on the Solomon VRPTW instances: the planner's engines against the best known distances.

    LASTMILE_SHARED=../shared python bench/solomon.py [--seconds 4] [--only R1] [--engine both|vroom|pyvrp]

Reads the instances from $BENCH_INSTANCES, else $LASTMILE_SHARED/benchmarks/solomon (never copied), writes
var/bench/solomon.csv (instance, vehicles, distance, best known vehicles and distance, gap %, seconds, engine)
and prints the mean gap per class and overall. The gap is taken against the folder's bks_distance.csv when it
has one, else bks.csv.

Rounding: the engines work on integers, so coordinates' Euclidean distances are scaled by 100: distance =
round(100 d), travel time = ceil(100 d) (never shorter than the true time, so a plan the engines find feasible
is feasible in exact arithmetic); windows and service times (integers) are scaled by 100 exactly. The distance
reported is recomputed from the routes in double precision, the convention of the best known solutions.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lastmile.planner.problem import Matrix, SolverInput, SolverJob, SolverVehicle
from lastmile.planner.solver import SolveOptions, solve

SCALE = 100


@dataclass(frozen=True)
class Instance:
    name: str
    vehicles: int
    capacity: int
    rows: list[
        tuple[float, float, int, int, int, int]
    ]  # x, y, demand, ready, due, service; row 0 is the depot


def read_instance(path: Path) -> Instance:
    lines = [line.split() for line in path.read_text().splitlines()]
    name = lines[0][0]
    numeric = [row for row in lines if row and all(_number(x) for x in row)]
    vehicles, capacity = int(numeric[0][0]), int(numeric[0][1])
    rows = [
        (float(r[1]), float(r[2]), int(float(r[3])), int(float(r[4])), int(float(r[5])), int(float(r[6])))
        for r in numeric[1:]
    ]
    return Instance(name, vehicles, capacity, rows)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def solver_input(instance: Instance) -> tuple[SolverInput, np.ndarray]:
    xy = np.array([(r[0], r[1]) for r in instance.rows])
    exact = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2))
    matrix = Matrix.of(np.ceil(exact * SCALE - 1e-9), np.rint(exact * SCALE))
    depot = instance.rows[0]
    jobs = tuple(
        SolverJob(
            id=i,
            location=i,
            service=row[5] * SCALE,
            delivery=(row[2],),
            pickup=(0,),
            windows=((row[3] * SCALE, row[4] * SCALE),),
        )
        for i, row in enumerate(instance.rows)
        if i > 0
    )
    vehicles = tuple(
        SolverVehicle(
            id=k + 1,
            profile="euclid",
            start=0,
            end=0,
            capacity=(instance.capacity,),
            window=(depot[3] * SCALE, depot[4] * SCALE),
            per_hour=0,
            per_km=1000,  # cost = distance
        )
        for k in range(instance.vehicles)
    )
    return SolverInput(jobs=jobs, vehicles=vehicles, matrices={"euclid": matrix}), exact


def exact_distance(instance: Instance, exact: np.ndarray, routes: list[list[int]]) -> float:
    """Total distance in double precision; raises if a route breaks a window or the capacity."""
    total = 0.0
    for route in routes:
        t, here, load = float(instance.rows[0][3]), 0, 0
        for job in route:
            _, _, demand, ready, due, service = instance.rows[job]
            t = max(t + exact[here, job], ready)
            if t > due + 1e-6:
                raise AssertionError(f"{instance.name}: customer {job} served at {t:.3f} after {due}")
            t += service
            load += demand
            total += exact[here, job]
            here = job
        total += exact[here, 0]
        if t + exact[here, 0] > instance.rows[0][4] + 1e-6 or load > instance.capacity:
            raise AssertionError(f"{instance.name}: a route breaks the depot's window or the capacity")
    return total


def best_known(folder: Path) -> dict[str, tuple[int, float]]:
    path = folder / "bks_distance.csv"
    if not path.exists():
        path = folder / "bks.csv"
    with path.open() as f:
        return {row["instance"]: (int(row["vehicles"]), float(row["distance"])) for row in csv.DictReader(f)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "4.5")))
    parser.add_argument("--exploration", type=int, default=int(os.environ.get("BENCH_EXPLORATION", "1")))
    parser.add_argument("--engine", choices=("both", "vroom", "pyvrp"), default="both")
    parser.add_argument("--only", default="", help="instances whose name starts with this")
    parser.add_argument(
        "--vroom-share", type=float, default=float(os.environ.get("BENCH_VROOM_SHARE", "0.3"))
    )
    parser.add_argument("--cold-hgs", action="store_true", help="start PyVRP from scratch, not VROOM's plan")
    parser.add_argument("--out", default="var/bench/solomon.csv")
    args = parser.parse_args()
    shared = Path(os.environ.get("LASTMILE_SHARED", "../shared"))
    folder = Path(os.environ.get("BENCH_INSTANCES", shared / "benchmarks" / "solomon"))
    if not folder.is_dir():
        sys.exit(f"no instances at {folder}: set LASTMILE_SHARED or BENCH_INSTANCES")
    bks = best_known(folder)
    paths = sorted(p for p in folder.glob("*.txt") if p.stem.upper().startswith(args.only.upper()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    options = SolveOptions(
        mode="wave",
        exploration=args.exploration,
        seconds=args.seconds,
        hgs=args.engine != "vroom",
        vroom_share=args.vroom_share,
        seed_hgs=not args.cold_hgs,
    )
    for path in paths:
        rows.append(run_one(path, bks, options, args.engine))
        print(",".join(str(v) for v in rows[-1].values()), flush=True)
    write(out, rows)
    summarise(rows)


def run_one(
    path: Path, bks: dict[str, tuple[int, float]], options: SolveOptions, engine: str
) -> dict[str, object]:
    instance = read_instance(path)
    inp, exact = solver_input(instance)
    began = time.perf_counter()
    if engine == "pyvrp":
        from lastmile.planner import hgs

        solution, winner, costs = hgs.solve(inp, options.seconds, all_required=True), "pyvrp", {}
    else:
        solved = solve(inp, options)
        solution, winner, costs = solved.solution, solved.engine, solved.candidates
    seconds = time.perf_counter() - began
    routes = [[s["id"] for s in r["steps"] if s["type"] == "job"] for r in solution["routes"]]
    if sum(len(r) for r in routes) != len(instance.rows) - 1:
        raise AssertionError(f"{instance.name}: {winner} left customers out")
    distance = exact_distance(instance, exact, routes)
    known = bks.get(instance.name, (0, math.nan))
    return {
        "instance": instance.name,
        "vehicles": len(routes),
        "distance": round(distance, 2),
        "bks_vehicles": known[0],
        "bks_distance": known[1],
        "gap_pct": round(100 * (distance - known[1]) / known[1], 3),
        "seconds": round(seconds, 2),
        "engine": winner,
        "vroom_cost": costs.get("vroom", ""),
        "pyvrp_cost": costs.get("pyvrp", ""),
    }


def write(out: Path, rows: list[dict[str, object]]) -> None:
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def summarise(rows: list[dict[str, object]]) -> None:
    classes: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        name = str(row["instance"])
        classes.setdefault(name[:3] if name.startswith("RC") else name[:2], []).append(row)
    for name, group in [*sorted(classes.items()), ("all", rows)]:
        gaps = [float(str(r["gap_pct"])) for r in group]
        secs = [float(str(r["seconds"])) for r in group]
        wins = sum(1 for r in group if r["engine"] == "pyvrp")
        print(
            f"{name:4} n={len(group):2} gap={statistics.mean(gaps):.3f}% "
            f"vehicles={statistics.mean(float(str(r['vehicles'])) for r in group):.2f} "
            f"mean_s={statistics.mean(secs):.2f} max_s={max(secs):.2f} pyvrp_wins={wins}"
        )


if __name__ == "__main__":
    main()
