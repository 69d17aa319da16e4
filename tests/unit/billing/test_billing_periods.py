"""Billing periods in awkward timezones, across DST changes and short months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from billing.errors import OutsideSubscription, UnknownTimezone
from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    first_period,
    full_period_containing,
    local_midnight,
    next_period,
    period_containing,
    pro_rata_fraction,
    resolve_timezone,
)

CAL = BillingTime.CALENDAR
ANN = BillingTime.ANNIVERSARY
W, M, Q, S, Y = (
    PlanInterval.WEEKLY,
    PlanInterval.MONTHLY,
    PlanInterval.QUARTERLY,
    PlanInterval.SEMIANNUAL,
    PlanInterval.YEARLY,
)


def local(zone: str, text: str) -> datetime:
    """A local wall-clock time in the zone, as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


TYO, KOL, CHA = "Asia/Tokyo", "Asia/Kolkata", "Pacific/Chatham"
NYC, PPG = "America/New_York", "Pacific/Pago_Pago"
SUB = "subscription start"

# (zone, interval, billing time, subscription start (local), instant (local),
#  expected start (local), expected end (local)). SUB marks the clipped first period, which
#  starts at the subscription's own start; every other boundary is a local midnight.
PERIODS = [
    # Asia/Tokyo (+09:00, no DST)
    (TYO, M, CAL, "2026-01-15T15:00", "2026-01-20T00:00", SUB, "2026-02-01"),
    (TYO, M, CAL, "2026-01-15T15:00", "2026-02-01T00:00", "2026-02-01", "2026-03-01"),
    (TYO, M, CAL, "2026-01-15T15:00", "2026-02-28T23:59:59", "2026-02-01", "2026-03-01"),
    (TYO, M, ANN, "2026-01-15T15:00", "2026-02-14T23:59", SUB, "2026-02-15"),
    (TYO, M, ANN, "2026-01-15T15:00", "2026-02-15T00:00", "2026-02-15", "2026-03-15"),
    (TYO, W, CAL, "2026-01-07T09:00", "2026-01-08T12:00", SUB, "2026-01-12"),
    (TYO, W, CAL, "2026-01-07T09:00", "2026-01-18T23:00", "2026-01-12", "2026-01-19"),
    (TYO, W, ANN, "2026-01-07T09:00", "2026-01-20T12:00", "2026-01-14", "2026-01-21"),
    (TYO, Y, CAL, "2026-05-05T00:00", "2027-03-01T00:00", "2027-01-01", "2028-01-01"),
    # Asia/Kolkata (+05:30)
    (KOL, M, CAL, "2026-01-31T23:00", "2026-02-01T00:00", "2026-02-01", "2026-03-01"),
    (KOL, M, CAL, "2026-01-31T23:00", "2026-01-31T23:59", SUB, "2026-02-01"),
    (KOL, Q, CAL, "2026-02-10T10:00", "2026-03-31T12:00", SUB, "2026-04-01"),
    (KOL, Q, CAL, "2026-02-10T10:00", "2026-04-01T00:00", "2026-04-01", "2026-07-01"),
    (KOL, Q, ANN, "2026-02-10T10:00", "2026-06-01T00:00", "2026-05-10", "2026-08-10"),
    (KOL, S, CAL, "2026-03-05T08:00", "2026-08-01T00:00", "2026-07-01", "2027-01-01"),
    # Pacific/Chatham (+12:45 standard, +13:45 daylight until 2026-04-05)
    (CHA, M, CAL, "2026-03-10T12:00", "2026-04-05T03:00", "2026-04-01", "2026-05-01"),
    (CHA, M, CAL, "2026-03-10T12:00", "2026-04-30T23:59", "2026-04-01", "2026-05-01"),
    (CHA, W, CAL, "2026-03-10T12:00", "2026-04-05T12:00", "2026-03-30", "2026-04-06"),
    (CHA, W, CAL, "2026-09-01T12:00", "2026-09-27T12:00", "2026-09-21", "2026-09-28"),
    (CHA, M, ANN, "2026-01-31T15:00", "2026-04-29T00:00", "2026-03-31", "2026-04-30"),
    # America/New_York across 2026-03-08 (spring forward) and 2026-11-01 (fall back)
    (NYC, M, CAL, "2026-02-20T10:00", "2026-03-08T03:30", "2026-03-01", "2026-04-01"),
    (NYC, W, CAL, "2026-02-20T10:00", "2026-03-08T01:59", "2026-03-02", "2026-03-09"),
    (NYC, W, CAL, "2026-02-20T10:00", "2026-03-09T00:00", "2026-03-09", "2026-03-16"),
    (NYC, M, CAL, "2026-02-20T10:00", "2026-11-01T01:30", "2026-11-01", "2026-12-01"),
    (NYC, W, CAL, "2026-02-20T10:00", "2026-11-01T23:59", "2026-10-26", "2026-11-02"),
    (NYC, W, ANN, "2026-02-20T10:00", "2026-03-08T12:00", "2026-03-06", "2026-03-13"),
    (NYC, W, ANN, "2026-02-20T10:00", "2026-11-01T12:00", "2026-10-30", "2026-11-06"),
    # Pacific/Pago_Pago (-11:00)
    (PPG, M, CAL, "2025-12-31T23:00", "2026-01-01T00:00", "2026-01-01", "2026-02-01"),
    (PPG, Y, CAL, "2025-12-31T23:00", "2025-12-31T23:30", SUB, "2026-01-01"),
    (PPG, Y, ANN, "2025-12-31T23:00", "2026-12-31T00:00", "2026-12-31", "2027-12-31"),
    # Anniversary on the 31st: clamped to the month's end, never drifting
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-02-15T00:00", SUB, "2026-02-28"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-03-01T00:00", "2026-02-28", "2026-03-31"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-03-30T23:59:59", "2026-02-28", "2026-03-31"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-03-31T00:00", "2026-03-31", "2026-04-30"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-05-15T00:00", "2026-04-30", "2026-05-31"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2026-09-30T00:00", "2026-09-30", "2026-10-31"),
    ("UTC", M, ANN, "2026-01-31T12:00", "2028-02-29T00:00", "2028-02-29", "2028-03-31"),
    ("UTC", Q, ANN, "2025-11-30T00:00", "2026-03-01T00:00", "2026-02-28", "2026-05-30"),
    ("UTC", S, ANN, "2026-08-31T00:00", "2027-03-01T00:00", "2027-02-28", "2027-08-31"),
    # Anniversary on 29 February 2028
    ("UTC", Y, ANN, "2028-02-29T08:00", "2028-12-31T00:00", SUB, "2029-02-28"),
    ("UTC", Y, ANN, "2028-02-29T08:00", "2029-02-28T00:00", "2029-02-28", "2030-02-28"),
    ("UTC", Y, ANN, "2028-02-29T08:00", "2032-02-28T23:59", "2031-02-28", "2032-02-29"),
    ("UTC", Y, ANN, "2028-02-29T08:00", "2032-02-29T00:00", "2032-02-29", "2033-02-28"),
    ("UTC", M, ANN, "2028-02-29T08:00", "2028-03-29T00:00", "2028-03-29", "2028-04-29"),
    ("UTC", M, ANN, "2028-02-29T08:00", "2029-02-28T12:00", "2029-02-28", "2029-03-29"),
    ("UTC", Q, ANN, "2028-02-29T08:00", "2029-02-28T12:00", "2029-02-28", "2029-05-29"),
    (TYO, Y, ANN, "2028-02-29T08:00", "2029-03-01T00:00", "2029-02-28", "2030-02-28"),
]


@pytest.mark.parametrize(
    ("zone", "interval", "billing_time", "started", "instant", "start", "end"), PERIODS
)
def test_period_containing(
    zone: str,
    interval: PlanInterval,
    billing_time: BillingTime,
    started: str,
    instant: str,
    start: str,
    end: str,
) -> None:
    tz = ZoneInfo(zone)
    subscription_at = local(zone, started)
    period = period_containing(
        local(zone, instant),
        subscription_at=subscription_at,
        interval=interval,
        billing_time=billing_time,
        tz=tz,
    )
    expected_start = subscription_at if start == SUB else local(zone, start)
    assert period == BillingPeriod(expected_start, local(zone, end))
    assert period.start.tzinfo is UTC and period.end.tzinfo is UTC


# The same periods as UTC instants: the offsets are what a reader checks by hand.
UTC_PERIODS = [
    ("Asia/Tokyo", M, "2026-02-01", "2026-01-31T15:00", "2026-02-28T15:00"),
    ("Asia/Kolkata", M, "2026-02-01", "2026-01-31T18:30", "2026-02-28T18:30"),
    ("Pacific/Chatham", M, "2026-04-01", "2026-03-31T10:15", "2026-04-30T11:15"),
    ("Pacific/Chatham", M, "2026-09-01", "2026-08-31T11:15", "2026-09-30T10:15"),
    ("America/New_York", M, "2026-03-01", "2026-03-01T05:00", "2026-04-01T04:00"),
    ("America/New_York", M, "2026-11-01", "2026-11-01T04:00", "2026-12-01T05:00"),
    ("America/New_York", W, "2026-03-02", "2026-03-02T05:00", "2026-03-09T04:00"),
    ("America/New_York", W, "2026-10-26", "2026-10-26T04:00", "2026-11-02T05:00"),
    ("Pacific/Pago_Pago", M, "2026-01-01", "2026-01-01T11:00", "2026-02-01T11:00"),
]


@pytest.mark.parametrize(("zone", "interval", "day", "start", "end"), UTC_PERIODS)
def test_boundaries_are_local_midnights_stored_in_utc(
    zone: str, interval: PlanInterval, day: str, start: str, end: str
) -> None:
    tz = ZoneInfo(zone)
    period = period_containing(
        local(zone, day),
        subscription_at=utc("2025-01-01T00:00"),
        interval=interval,
        billing_time=CAL,
        tz=tz,
    )
    assert (period.start, period.end) == (utc(start), utc(end))


@pytest.mark.parametrize(
    ("zone", "start", "end", "hours"),
    [
        ("America/New_York", "2026-03-08", "2026-03-09", 23),
        ("America/New_York", "2026-11-01", "2026-11-02", 25),
        ("Pacific/Chatham", "2026-04-05", "2026-04-06", 25),
        ("Pacific/Chatham", "2026-09-27", "2026-09-28", 23),
        ("Asia/Kolkata", "2026-03-08", "2026-03-09", 24),
    ],
)
def test_dst_days_keep_their_real_length(zone: str, start: str, end: str, hours: int) -> None:
    tz = ZoneInfo(zone)
    day = BillingPeriod(
        local_midnight(datetime.fromisoformat(start).date(), tz),
        local_midnight(datetime.fromisoformat(end).date(), tz),
    )
    assert day.duration == timedelta(hours=hours)


def test_first_and_next_periods_chain_for_an_anniversary_on_the_31st() -> None:
    tz = ZoneInfo("America/New_York")
    started = local("America/New_York", "2026-01-31T18:30")
    period = first_period(subscription_at=started, interval=M, billing_time=ANN, tz=tz)
    starts = [period.start]
    for _ in range(12):
        period = next_period(period, subscription_at=started, interval=M, billing_time=ANN, tz=tz)
        starts.append(period.start)
    assert starts[0] == started
    days = [s.astimezone(tz).day for s in starts[1:]]
    assert days == [28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31]


def test_instants_before_the_subscription_have_no_period() -> None:
    with pytest.raises(OutsideSubscription):
        period_containing(
            utc("2026-01-01T00:00"),
            subscription_at=utc("2026-01-02T00:00"),
            interval=M,
            billing_time=CAL,
            tz=ZoneInfo("UTC"),
        )


def test_periods_are_half_open() -> None:
    period = BillingPeriod(utc("2026-01-01T00:00"), utc("2026-02-01T00:00"))
    assert period.contains(utc("2026-01-01T00:00"))
    assert period.contains(utc("2026-01-31T23:59:59.999999"))
    assert not period.contains(utc("2026-02-01T00:00"))
    assert not period.contains(utc("2025-12-31T23:59:59.999999"))


@pytest.mark.parametrize(
    ("start", "end"),
    [("2026-01-02T00:00", "2026-01-01T00:00"), ("2026-01-01T00:00", "2026-01-01T00:00")],
)
def test_a_period_must_end_after_it_starts(start: str, end: str) -> None:
    with pytest.raises(ValueError):
        BillingPeriod(utc(start), utc(end))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        BillingPeriod(datetime(2026, 1, 1), utc("2026-02-01T00:00"))


@pytest.mark.parametrize(
    ("customer", "organization", "expected"),
    [
        ("Asia/Tokyo", "Europe/Paris", "Asia/Tokyo"),
        (None, "Europe/Paris", "Europe/Paris"),
        ("", "Pacific/Chatham", "Pacific/Chatham"),
        (None, None, "UTC"),
    ],
)
def test_resolve_timezone(customer: str | None, organization: str | None, expected: str) -> None:
    assert resolve_timezone(customer, organization) == ZoneInfo(expected)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "Not a zone"])
def test_unknown_timezones_are_refused(name: str) -> None:
    with pytest.raises(UnknownTimezone):
        resolve_timezone(name, None)


# (zone, interval, billing time, subscription start (local), fraction of the first period)
PRO_RATA = [
    ("Asia/Tokyo", M, CAL, "2026-01-15T15:00", Fraction(17, 31)),
    ("UTC", M, CAL, "2026-02-01T00:00", Fraction(1)),
    ("UTC", M, CAL, "2026-02-28T23:00", Fraction(1, 28)),
    ("UTC", M, CAL, "2028-02-15T00:00", Fraction(15, 29)),
    ("America/New_York", M, CAL, "2026-03-08T12:00", Fraction(24, 31)),
    ("UTC", W, CAL, "2026-01-07T10:00", Fraction(5, 7)),
    ("UTC", Q, CAL, "2026-03-01T00:00", Fraction(31, 90)),
    ("UTC", Y, CAL, "2028-07-01T00:00", Fraction(184, 366)),
    ("Pacific/Chatham", M, ANN, "2026-01-31T15:00", Fraction(1)),
    ("Asia/Kolkata", Y, ANN, "2028-02-29T23:59", Fraction(1)),
]


@pytest.mark.parametrize(("zone", "interval", "billing_time", "started", "fraction"), PRO_RATA)
def test_pro_rata_of_the_first_period_counts_local_days(
    zone: str, interval: PlanInterval, billing_time: BillingTime, started: str, fraction: Fraction
) -> None:
    tz = ZoneInfo(zone)
    start = local(zone, started)
    period = first_period(
        subscription_at=start, interval=interval, billing_time=billing_time, tz=tz
    )
    full = full_period_containing(
        start, subscription_at=start, interval=interval, billing_time=billing_time, tz=tz
    )
    assert pro_rata_fraction(period, full, tz) == fraction


def test_pro_rata_refuses_a_period_outside_the_full_one() -> None:
    tz = ZoneInfo("UTC")
    with pytest.raises(ValueError):
        pro_rata_fraction(
            BillingPeriod(utc("2026-01-01T00:00"), utc("2026-03-01T00:00")),
            BillingPeriod(utc("2026-01-01T00:00"), utc("2026-02-01T00:00")),
            tz,
        )


def test_enums_carry_lagos_values() -> None:
    assert [i.value for i in PlanInterval] == [
        "weekly",
        "monthly",
        "quarterly",
        "semiannual",
        "yearly",
    ]
    assert [b.value for b in BillingTime] == ["calendar", "anniversary"]
