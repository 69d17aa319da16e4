"""Properties of billing periods: they tile time, and every instant has exactly one."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.periods import (
    BillingPeriod,
    BillingTime,
    PlanInterval,
    first_period,
    next_period,
    period_containing,
)

ONE_MICROSECOND = timedelta(microseconds=1)

# The zones of the invariant, plus zones whose DST jumps happen at midnight itself
# (America/Santiago, America/Havana) or by half an hour (Australia/Lord_Howe).
ZONES = [
    "UTC",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/New_York",
    "Pacific/Pago_Pago",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
]

zones = st.sampled_from(ZONES).map(ZoneInfo)
intervals = st.sampled_from(list(PlanInterval))
billing_times = st.sampled_from(list(BillingTime))
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2034, 12, 31), timezones=st.just(UTC)
)
# Anchors on the awkward days most of the time: month ends and leap days.
awkward_days = st.sampled_from(
    [
        datetime(2026, 1, 31, 13, 30, tzinfo=UTC),
        datetime(2028, 2, 29, 0, 0, tzinfo=UTC),
        datetime(2028, 2, 29, 23, 59, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
    ]
)
subscription_starts = st.one_of(instants, awkward_days)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def is_first_instant_of_a_local_day(instant: datetime, tz: ZoneInfo) -> bool:
    before = (instant - ONE_MICROSECOND).astimezone(tz)
    return before.date() < instant.astimezone(tz).date() and (
        instant.astimezone(tz).time().hour in (0, 1)
    )


@PROPERTY_SETTINGS
@given(tz=zones, interval=intervals, billing_time=billing_times, started=subscription_starts)
def test_consecutive_periods_tile_time(
    tz: ZoneInfo, interval: PlanInterval, billing_time: BillingTime, started: datetime
) -> None:
    period = first_period(
        subscription_at=started, interval=interval, billing_time=billing_time, tz=tz
    )
    assert period.start == started
    for _ in range(14):
        following = next_period(
            period, subscription_at=started, interval=interval, billing_time=billing_time, tz=tz
        )
        assert following.start == period.end
        assert following.start < following.end
        assert is_first_instant_of_a_local_day(following.start, tz)
        period = following


@PROPERTY_SETTINGS
@given(
    tz=zones,
    interval=intervals,
    billing_time=billing_times,
    started=subscription_starts,
    offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3 * 366)),
)
def test_every_instant_is_in_exactly_one_period(
    tz: ZoneInfo,
    interval: PlanInterval,
    billing_time: BillingTime,
    started: datetime,
    offset: timedelta,
) -> None:
    instant = started + offset
    terms = {
        "subscription_at": started,
        "interval": interval,
        "billing_time": billing_time,
        "tz": tz,
    }
    period = period_containing(instant, **terms)  # type: ignore[arg-type]
    assert period.contains(instant)
    assert period_containing(period.start, **terms) == period  # type: ignore[arg-type]
    assert period_containing(period.end - ONE_MICROSECOND, **terms) == period  # type: ignore[arg-type]
    following = period_containing(period.end, **terms)  # type: ignore[arg-type]
    assert following.start == period.end
    if period.start > started:
        previous = period_containing(period.start - ONE_MICROSECOND, **terms)  # type: ignore[arg-type]
        assert previous.end == period.start
        assert not previous.contains(instant)


@PROPERTY_SETTINGS
@given(
    tz=zones,
    interval=st.sampled_from(
        [PlanInterval.MONTHLY, PlanInterval.QUARTERLY, PlanInterval.SEMIANNUAL, PlanInterval.YEARLY]
    ),
    started=subscription_starts,
    steps=st.integers(min_value=1, max_value=30),
)
def test_anniversary_days_clamp_to_month_end_without_drifting(
    tz: ZoneInfo, interval: PlanInterval, started: datetime, steps: int
) -> None:
    anchor_day = started.astimezone(tz).day
    period: BillingPeriod = first_period(
        subscription_at=started, interval=interval, billing_time=BillingTime.ANNIVERSARY, tz=tz
    )
    for _ in range(steps):
        period = next_period(
            period,
            subscription_at=started,
            interval=interval,
            billing_time=BillingTime.ANNIVERSARY,
            tz=tz,
        )
    start = period.start.astimezone(tz)
    # A zone whose midnight was skipped puts the boundary at 01:00 the same day.
    last_day = calendar.monthrange(start.year, start.month)[1]
    assert start.day == min(anchor_day, last_day)
