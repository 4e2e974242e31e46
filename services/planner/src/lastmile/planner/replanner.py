"""The planner's background work: a debounced queue of depot-days to (re-)plan, and the waves at their cutoffs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

from lastmile.common.ids import new_id
from lastmile.common.runtime import BackgroundTask
from lastmile.planner import domain
from lastmile.planner.handlers import Deps
from lastmile.planner.handlers_plans import Run, Steps, load_day, mode_for, problem_of, save_plan, solve_day
from lastmile.planner.store import PlannerStore, PlanRow

log = logging.getLogger(__name__)
DELAY_TRIGGERS = frozenset({"delay"})  # requests that may wait: see Replanner._calm


@dataclass
class _Wanted:
    triggers: Counter[str] = field(default_factory=Counter)
    plan_ids: list[str] = field(default_factory=list)
    wave: str | None = None


class Replanner(BackgroundTask):
    """Collects depot-days to plan and plans each, a short debounce after the last request, so that a burst of
    orders costs one solve. One plan of a depot-day at a time, but depot-days side by side: a merchant's order
    for tomorrow does not wait behind today's re-plan of a few hundred stops (with `solver_processes` ≥ 2 the
    two solves run at once). Days of a depot with waves wait for their first wave."""

    name = "replanner"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._pending: dict[tuple[str, date], _Wanted] = {}
        self._wake = asyncio.Event()
        self._running: dict[tuple[str, date], asyncio.Task[None]] = {}
        self._planned_at: dict[tuple[str, date], datetime] = {}  # when each depot-day's last plan began
        self._timer: asyncio.TimerHandle | None = None

    def request(
        self, depot_id: str, day: date, trigger: str, plan_id: str | None = None, wave: str | None = None
    ) -> None:
        wanted = self._pending.setdefault((depot_id, day), _Wanted())
        wanted.triggers[trigger] += 1
        if plan_id is not None:
            wanted.plan_ids.append(plan_id)
        wanted.wave = wanted.wave or wave
        self._wake.set()

    async def start(self) -> None:
        await super().start()
        await self.resume()

    @property
    def idle(self) -> bool:
        return not self._pending and not self._running

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.deps.settings.replan_debounce_s)
            self._wake.clear()
            batch, self._pending = self._pending, {}
            for key, wanted in sorted(batch.items()):
                if key in self._running:  # this depot-day is being planned: the request waits its turn
                    self._merge(key, wanted)
                    continue
                if (wait := self._calm(key, wanted)) > 0:
                    self._merge(key, wanted)
                    self._wake_in(wait)
                    continue
                self._planned_at[key] = self.deps.clock.now()
                self._running[key] = asyncio.create_task(self._plan_and_release(key, wanted))

    def _calm(self, key: tuple[str, date], wanted: _Wanted) -> float:
        """Clock seconds a request of delays only waits for (`replan_delay_interval_s` after the day's last
        plan); anything else (a new order, a failed stop, a wave, ops) is planned at once, delays with it.
        Told each late stop, the planner re-planned a late fleet's day back to back (37,885 delays, 169 plans
        for nothing else, in one simulated day)."""
        last = self._planned_at.get(key)
        if last is None or set(wanted.triggers) - DELAY_TRIGGERS or wanted.plan_ids or wanted.wave:
            return 0.0
        since = (self.deps.clock.now() - last).total_seconds()
        return max(0.0, self.deps.settings.replan_delay_interval_s - since)

    def _wake_in(self, clock_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + self.deps.clock.real_seconds(clock_seconds)
        if self._timer is None or self._timer.cancelled() or when < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._wake.set)

    async def stop(self) -> None:
        await super().stop()
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()

    def _merge(self, key: tuple[str, date], wanted: _Wanted) -> None:
        waiting = self._pending.setdefault(key, _Wanted())
        waiting.triggers.update(wanted.triggers)
        waiting.plan_ids.extend(wanted.plan_ids)
        waiting.wave = waiting.wave or wanted.wave

    async def _plan_and_release(self, key: tuple[str, date], wanted: _Wanted) -> None:
        try:
            await self._plan(key[0], key[1], wanted)
        finally:
            self._running.pop(key, None)
            waiting = self._pending.get(key)
            if waiting is not None:
                if (wait := self._calm(key, waiting)) > 0:
                    self._wake_in(wait)
                else:
                    self._wake.set()

    async def _plan(self, depot_id: str, day: date, wanted: _Wanted) -> None:
        kind = "wave" if wanted.wave else ("on_demand" if wanted.plan_ids else "replan")
        try:
            await plan_day(
                self.deps,
                Run(depot_id, day, kind, dict(wanted.triggers), tuple(wanted.plan_ids), wanted.wave),
            )
        except Exception as exc:
            log.exception("planning %s on %s failed; will retry", depot_id, day)
            await self._failed(wanted.plan_ids, exc)
            for trigger, count in wanted.triggers.items():
                for _ in range(count):
                    self.request(depot_id, day, trigger, wave=wanted.wave)
            await asyncio.sleep(1.0)

    async def _failed(self, plan_ids: list[str], exc: Exception) -> None:
        with contextlib.suppress(Exception):
            async with self.deps.db.transaction() as session:
                for plan_id in plan_ids:
                    row = await PlannerStore(session).plan(plan_id)
                    if row is not None:
                        row.status, row.error = "failed", f"{type(exc).__name__}: {exc}"[:500]

    async def resume(self) -> None:
        """After a restart: plan every day that has jobs waiting, and every plan still queued."""
        async with self.deps.db.read() as session:
            store = PlannerStore(session)
            for depot in await store.depots():
                for day in await store.pending_days(depot.id):
                    self.request(depot.id, day, "restart")
            for plan in await store.unfinished_plans():
                self.request(plan.depot_id, plan.service_date, "restart", plan_id=plan.id, wave=plan.wave)


async def plan_day(deps: Deps, run: Run) -> bool:
    """Plan one depot-day; False when there was nothing to do (unknown depot, or its wave has not run yet)."""
    steps = Steps()
    day = await load_day(deps, run.depot_id, run.day)
    if day is None:
        return False
    if run.kind == "replan" and day.depot.waves:
        async with deps.db.read() as session:
            if not await PlannerStore(session).wave_ran(run.depot_id, run.day):
                return False  # orders wait for the day's wave
    steps.lap("load")
    now = deps.clock.now()
    problem = await asyncio.to_thread(problem_of, day, now, deps.settings.position_max_age_s)
    steps.lap("problem")
    left_out = frozenset(o for o, j in day.jobs.items() if j.status == "unassigned")
    mode = mode_for(run.kind, day)
    outcome = await solve_day(deps, problem, mode, frozenset(run.triggers), left_out, steps)
    await save_plan(deps, run, outcome)
    steps.lap("save_commit")
    log.info(
        "planned %s on %s (%s, %d jobs): %.2f s, %s",
        run.depot_id,
        run.day,
        mode,
        len(problem.jobs),
        sum(steps.values()),
        " ".join(f"{k} {v:.2f}" for k, v in steps.items()),
    )
    return True


class WaveScheduler(BackgroundTask):
    """Starts each depot's waves at their cutoffs (once per wave and day, recorded as a plan)."""

    name = "waves"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("checking planning waves failed")
            await asyncio.sleep(self.deps.settings.wave_check_s)

    async def tick(self) -> list[str]:
        """Queue every wave whose cutoff has passed and that has not run; the ids of the plans queued."""
        now = self.deps.clock.now()
        queued = []
        async with self.deps.db.transaction() as session:
            store = PlannerStore(session)
            for depot in await store.depots():
                for wave, day, _cutoff in domain.due_waves(depot.to_spec(), now):
                    if await store.wave_ran(depot.id, day, wave.cutoff):
                        continue
                    row = PlanRow.queued(
                        new_id("pln"), depot.id, day, "wave", {"wave": 1}, now, wave=wave.cutoff
                    )
                    session.add(row)
                    queued.append((depot.id, day, row.id, wave.cutoff))
        for depot_id, day, plan_id, cutoff in queued:
            self.deps.replanner.request(depot_id, day, "wave", plan_id=plan_id, wave=cutoff)
        return [q[2] for q in queued]
