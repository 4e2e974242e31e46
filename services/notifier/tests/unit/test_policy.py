"""The policy: what each delivery event tells the customer, and when."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lastmile.common import events as ev
from lastmile.notifier import domain
from lastmile.notifier.domain import OrderState, Policy, decide

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
P = Policy(eta_threshold=timedelta(minutes=15), eta_cap=2)


def scheduled(start: datetime, end: datetime) -> ev.DeliveryScheduled:
    return ev.DeliveryScheduled(
        order_id="o", depot_id="d", vehicle_id="v", route_id="r", route_version=1, planned_arrival=start,
        promised_window=ev.TimeWindow(start=start, end=end), service_date=start.date(),
    )  # fmt: skip


def eta(minutes: float, *, soon: bool = False, at: datetime = NOW) -> ev.EtaChanged:
    return ev.EtaChanged(
        order_id="o", vehicle_id="v", eta=NOW + timedelta(minutes=minutes), arriving_soon=soon, at=at
    )


def out_for_delivery(eta_minutes: float | None = 60, at: datetime = NOW) -> ev.OutForDelivery:
    when = NOW + timedelta(minutes=eta_minutes) if eta_minutes is not None else None
    return ev.OutForDelivery(order_id="o", vehicle_id="v", route_id="r", eta=when, at=at)


def delivered() -> ev.Delivered:
    return ev.Delivered(order_id="o", vehicle_id="v", at=NOW)


def failed() -> ev.DeliveryFailed:
    return ev.DeliveryFailed(order_id="o", vehicle_id="v", at=NOW, reason="not_at_home")


def run(
    events: list[ev.Payload], state: OrderState | None = None, now: datetime = NOW
) -> list[domain.Decision]:
    state = state or OrderState()
    decisions = []
    for event in events:
        decision = decide(event, state, BERLIN, now, P)
        decisions.append(decision)
        state = decision.state
    return decisions


class TestScheduled:
    def test_tells_the_promised_window(self) -> None:
        start = NOW + timedelta(hours=2)
        [d] = run([scheduled(start, start + timedelta(hours=2))])
        [m] = d.messages
        assert (m.kind, m.facts.window_start, m.facts.window_end) == (
            "scheduled",
            start,
            start + timedelta(hours=2),
        )
        assert m.send_after is None
        assert d.state.status == "scheduled"

    def test_a_new_window_is_news_and_the_same_window_is_not(self) -> None:
        start = NOW + timedelta(hours=2)
        a, b, c = run(
            [scheduled(start, start + timedelta(hours=2))] * 2
            + [scheduled(start + timedelta(days=1), start + timedelta(days=1, hours=2))]
        )
        assert a.messages[0].identity == b.messages[0].identity != c.messages[0].identity

    def test_a_window_already_over_is_dropped(self) -> None:
        [d] = run([scheduled(NOW - timedelta(hours=3), NOW - timedelta(hours=1))])
        assert d.messages == ()
        assert d.dropped == (domain.Dropped("scheduled", "stale"),)


class TestOutForDelivery:
    def test_tells_the_eta(self) -> None:
        [d] = run([out_for_delivery(60)])
        assert d.messages[0].kind == "out_for_delivery"
        assert d.messages[0].facts.eta == NOW + timedelta(minutes=60)
        assert d.state.last_eta == NOW + timedelta(minutes=60)

    def test_an_old_event_is_stale(self) -> None:
        [d] = run([out_for_delivery(None, at=NOW - timedelta(hours=3))])
        assert d.dropped == (domain.Dropped("out_for_delivery", "stale"),)


class TestEtaChanged:
    def test_a_small_change_says_nothing(self) -> None:
        _, d = run([out_for_delivery(60), eta(70)])
        assert d.messages == ()
        assert d.dropped == ()

    def test_a_change_past_the_threshold_is_told_once_per_bucket(self) -> None:
        _, d = run([out_for_delivery(60), eta(90)])
        [m] = d.messages
        assert m.kind == "eta_changed"
        assert m.facts.eta == NOW + timedelta(minutes=90)
        assert m.identity == "eta_changed:2026-12-01T10:30Z"
        assert d.state.eta_messages == 1

    def test_two_events_in_the_same_bucket_share_an_identity(self) -> None:
        a = decide(eta(92), OrderState(last_eta=NOW), BERLIN, NOW, P)
        b = decide(eta(95), OrderState(last_eta=NOW), BERLIN, NOW, P)
        assert a.messages[0].identity == b.messages[0].identity

    def test_changes_beyond_the_cap_are_dropped_and_counted(self) -> None:
        decisions = run([out_for_delivery(60), eta(90), eta(120), eta(150)])
        assert [len(d.messages) for d in decisions] == [1, 1, 1, 0]
        assert decisions[-1].dropped == (domain.Dropped("eta_changed", "cap"),)

    def test_without_a_told_time_the_promised_window_is_the_reference(self) -> None:
        window = OrderState(status="scheduled", window_start=NOW, window_end=NOW + timedelta(hours=2))
        assert decide(eta(60), window, BERLIN, NOW, P).messages == ()
        assert decide(eta(180), window, BERLIN, NOW, P).messages[0].kind == "eta_changed"

    def test_arriving_soon_is_its_own_message(self) -> None:
        _, d = run([out_for_delivery(60), eta(62, soon=True)])
        assert [m.kind for m in d.messages] == ["arriving_soon"]

    def test_an_eta_for_a_delivered_stop_is_dropped(self) -> None:
        _, d = run([delivered(), eta(90)])
        assert d.messages == ()
        assert d.dropped == (domain.Dropped("eta_changed", "already-delivered"),)

    def test_an_eta_in_the_past_is_dropped(self) -> None:
        [d] = run([eta(-5)], OrderState(last_eta=NOW - timedelta(hours=1)))
        assert d.dropped == (domain.Dropped("eta_changed", "stale"),)


class TestOutcomes:
    def test_delivered_makes_unsent_time_critical_messages_moot(self) -> None:
        [d] = run([delivered()], OrderState(status="out_for_delivery"))
        assert [m.kind for m in d.messages] == ["delivered"]
        assert set(d.supersedes) == {"out_for_delivery", "eta_changed", "arriving_soon"}

    def test_delivered_twice_says_it_once(self) -> None:
        a, b = run([delivered(), delivered()])
        assert len(a.messages) == 1
        assert b.messages == ()

    def test_a_failed_attempt_is_told_and_a_new_schedule_follows(self) -> None:
        start = NOW + timedelta(days=1)
        f, s = run([failed(), scheduled(start, start + timedelta(hours=2))])
        assert f.messages[0].kind == "failed"
        assert f.state.status == "failed"
        assert s.messages[0].kind == "scheduled"

    def test_a_cancelled_order_hears_nothing_more(self) -> None:
        cancel = ev.OrderCancelled(order_id="o", version=2, merchant_id="m", depot_id="d", cancelled_at=NOW)
        c, d = run([cancel, out_for_delivery(60)])
        assert set(c.supersedes) == set(domain.KINDS)
        assert d.dropped == (domain.Dropped("out_for_delivery", "cancelled"),)


class TestQuietHours:
    NIGHT = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    MORNING = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # 08:00 in Berlin

    def test_quiet_hours_span_midnight_in_the_recipients_zone(self) -> None:
        assert domain.quiet_until(self.NIGHT, BERLIN, P) == self.MORNING
        assert domain.quiet_until(datetime(2026, 12, 2, 5, 0, tzinfo=UTC), BERLIN, P) == self.MORNING
        assert domain.quiet_until(NOW, BERLIN, P) is None
        assert domain.quiet_until(self.NIGHT, ZoneInfo("America/New_York"), P) is None  # 16:30 there

    def test_a_message_that_can_wait_is_held_until_morning(self) -> None:
        [d] = run([delivered()], now=self.NIGHT)
        assert d.messages[0].send_after == self.MORNING

    def test_a_message_useless_by_morning_goes_now(self) -> None:
        soon = ev.EtaChanged(
            order_id="o", vehicle_id="v", eta=self.NIGHT + timedelta(minutes=40), at=self.NIGHT
        )
        [d] = run([soon], OrderState(status="out_for_delivery", last_eta=self.NIGHT), now=self.NIGHT)
        assert d.messages[0].send_after is None

    def test_a_morning_delivery_announced_at_night_waits(self) -> None:
        start = self.MORNING + timedelta(hours=2)
        [d] = run([scheduled(start, start + timedelta(hours=2))], now=self.NIGHT)
        assert d.messages[0].send_after == self.MORNING

    def test_no_quiet_hours_when_start_equals_end(self) -> None:
        assert domain.quiet_until(self.NIGHT, BERLIN, Policy(quiet_start=time(0), quiet_end=time(0))) is None


def test_an_unknown_time_zone_falls_back_to_the_default() -> None:
    assert domain.zone("Mars/Olympus", P) == ZoneInfo("UTC")
    assert domain.zone(None, Policy(default_timezone="Europe/Paris")) == ZoneInfo("Europe/Paris")


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap() -> None:
    delays = [domain.retry_delay(n, 2.0, 60.0, 0.0) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert domain.retry_delay(3, 2.0, 60.0, 0.999) < 8.0 <= 2 * domain.retry_delay(3, 2.0, 60.0, 0.0)


def test_eta_buckets_round_down_to_the_threshold() -> None:
    t = datetime(2026, 12, 1, 10, 44, 59, tzinfo=UTC)
    assert domain.eta_bucket(t, timedelta(minutes=15)) == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    assert date(2026, 12, 1) == t.date()
