"""Billing periods: which half-open [start, end) span of a subscription contains an instant.

Boundaries are local midnights in the billing timezone, stored as UTC instants. Where a
zone skips midnight (a DST jump at 00:00) the boundary is the first instant of that local
day. The first period of a subscription starts at the subscription's own start instant, as
Lago's does (a subscription started at 15:00 is not billed from 00:00 that day); every
later period starts on a local midnight.

Calendar periods align to the calendar: weeks start on Monday, months on the 1st, quarters
in January, April, July and October, half-years in January and July, years on 1 January.
Anniversary periods start on the local day of the subscription's start: the same weekday,
or the same day of the month, clamped to the month's last day (an anniversary on the 31st
falls on 28/29 February and again on 31 March: every boundary is computed from the anchor
day, never from the previous period, so it never drifts).
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import TypedDict, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.errors import OutsideSubscription, UnknownTimezone

_ONE_MICROSECOND = timedelta(microseconds=1)


class PlanInterval(enum.StrEnum):
    """How often a plan bills (Lago's `interval` values)."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    YEARLY = "yearly"


class BillingTime(enum.StrEnum):
    """Whether periods align to the calendar or to the subscription's start (Lago's values)."""

    CALENDAR = "calendar"
    ANNIVERSARY = "anniversary"


_MONTHS_PER_PERIOD: dict[PlanInterval, int] = {
    PlanInterval.MONTHLY: 1,
    PlanInterval.QUARTERLY: 3,
    PlanInterval.SEMIANNUAL: 6,
    PlanInterval.YEARLY: 12,
}


class SubscriptionCalendar(TypedDict):
    """How a subscription's periods fall (the keywords every period function takes): its
    start instant, its plan's interval, calendar or anniversary billing, and the billing
    timezone."""

    subscription_at: datetime
    interval: PlanInterval
    billing_time: BillingTime
    tz: ZoneInfo


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """A half-open span [start, end) of UTC instants that one invoice covers."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        # Normalised to UTC so that equal periods compare and hash equal whatever zone
        # the caller computed them in.
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))
        if not self.start < self.end:
            raise ValueError(f"a period must end after it starts: {self.start} >= {self.end}")

    def contains(self, instant: datetime) -> bool:
        """Whether the instant falls inside [start, end)."""
        _require_aware("instant", instant)
        return self.start <= instant < self.end

    @property
    def duration(self) -> timedelta:
        """The elapsed time between start and end (DST days count their real length)."""
        return self.end - self.start


def resolve_timezone(customer_tz: str | None, organization_tz: str | None) -> ZoneInfo:
    """The billing timezone: the customer's, else the organization's, else UTC."""
    name = customer_tz or organization_tz or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimezone(name) from exc


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local day, as a UTC instant."""
    # fold=0 reads a skipped midnight with the offset in force before the jump, which is
    # exactly the instant of the jump: the first instant that belongs to `day`.
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _add_months(anchor: date, months: int) -> date:
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(anchor.day, last_day))


@dataclass(frozen=True, slots=True)
class _Ladder:
    """The sequence of period-start dates of one subscription, indexed by integers."""

    base: date
    interval: PlanInterval

    @classmethod
    def of(cls, anchor: date, interval: PlanInterval, billing_time: BillingTime) -> _Ladder:
        if billing_time is BillingTime.ANNIVERSARY:
            return cls(anchor, interval)
        if interval is PlanInterval.WEEKLY:
            return cls(anchor - timedelta(days=anchor.weekday()), interval)
        months = _MONTHS_PER_PERIOD[interval]
        first_month = (anchor.month - 1) // months * months + 1
        return cls(date(anchor.year, first_month, 1), interval)

    def boundary(self, index: int) -> date:
        if self.interval is PlanInterval.WEEKLY:
            return self.base + timedelta(weeks=index)
        return _add_months(self.base, index * _MONTHS_PER_PERIOD[self.interval])

    def estimate(self, day: date) -> int:
        if self.interval is PlanInterval.WEEKLY:
            return (day - self.base).days // 7
        months = (day.year - self.base.year) * 12 + day.month - self.base.month
        return months // _MONTHS_PER_PERIOD[self.interval]


def full_period_containing(
    instant: datetime, **calendar: Unpack[SubscriptionCalendar]
) -> BillingPeriod:
    """The whole (unclipped) period around the instant, from local midnight to local midnight.

    It differs from `period_containing` only for the first period, whose start is clipped to
    the subscription's start; this is the denominator when pro-rating a partial period.
    """
    subscription_at, tz = calendar["subscription_at"], calendar["tz"]
    _require_aware("instant", instant)
    _require_aware("subscription_at", subscription_at)
    interval = PlanInterval(calendar["interval"])
    billing_time = BillingTime(calendar["billing_time"])
    ladder = _Ladder.of(subscription_at.astimezone(tz).date(), interval, billing_time)
    index = ladder.estimate(instant.astimezone(tz).date())
    # The estimate works on local dates; settling it on UTC instants keeps the answer right
    # even in zones whose clocks fall back across midnight.
    while instant < local_midnight(ladder.boundary(index), tz):
        index -= 1
    while instant >= local_midnight(ladder.boundary(index + 1), tz):
        index += 1
    return BillingPeriod(
        local_midnight(ladder.boundary(index), tz),
        local_midnight(ladder.boundary(index + 1), tz),
    )


def period_containing(instant: datetime, **calendar: Unpack[SubscriptionCalendar]) -> BillingPeriod:
    """The billing period of the subscription that contains the instant.

    Raises OutsideSubscription for an instant before the subscription started.
    """
    subscription_at = calendar["subscription_at"]
    _require_aware("instant", instant)
    _require_aware("subscription_at", subscription_at)
    if instant < subscription_at:
        raise OutsideSubscription(
            f"{instant.isoformat()} precedes the subscription's start "
            f"{subscription_at.isoformat()}: no billing period contains it"
        )
    full = full_period_containing(instant, **calendar)
    if full.start < subscription_at:
        return BillingPeriod(subscription_at, full.end)
    return full


def first_period(**calendar: Unpack[SubscriptionCalendar]) -> BillingPeriod:
    """The subscription's first period: from its start instant to the next boundary."""
    return period_containing(calendar["subscription_at"], **calendar)


def next_period(period: BillingPeriod, **calendar: Unpack[SubscriptionCalendar]) -> BillingPeriod:
    """The period that starts where the given one ends."""
    return period_containing(period.end, **calendar)


def local_days(period: BillingPeriod, tz: ZoneInfo) -> int:
    """How many local calendar days the period touches (a started day counts whole)."""
    first = period.start.astimezone(tz).date()
    last = (period.end - _ONE_MICROSECOND).astimezone(tz).date()
    return (last - first).days + 1


def pro_rata_fraction(period: BillingPeriod, full_period: BillingPeriod, tz: ZoneInfo) -> Fraction:
    """The share of a full period's price owed for a partial one, by local days as Lago does.

    A subscription starting on 15 January at 15:00 pays 17/31 of January: the start day
    counts whole. The fraction is exact; the caller rounds the amount once.
    """
    if period.start < full_period.start or period.end > full_period.end:
        raise ValueError(f"{period} does not lie within {full_period}")
    return Fraction(local_days(period, tz), local_days(full_period, tz))
