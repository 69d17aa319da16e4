"""A draft refreshed by late usage gives its coupon shares back before pricing them again:
what the draft took is added to what the coupon has now."""

from __future__ import annotations

from typing import Any

import pytest

from billing.invoice import AppliedCoupon, CouponFrequency, CouponType
from invoicer.late_usage import coupon_given_back

FIXED_ONCE = AppliedCoupon(CouponType.FIXED_AMOUNT, CouponFrequency.ONCE, amount_cents=5000)
RECURRING = AppliedCoupon(CouponType.PERCENTAGE, CouponFrequency.RECURRING, percentage_rate=None)


def use(before: tuple[int | None, int | None], after: tuple[int | None, int | None]) -> Any:
    keys = ("amount_cents_remaining", "frequency_duration_remaining")
    return {
        "before": dict(zip(keys, before, strict=True)),
        "after": dict(zip(keys, after, strict=True)),
    }


@pytest.mark.parametrize(
    ("now", "taken", "expected"),
    [
        # A fixed once coupon the draft took 3000 of, untouched since: 5000 again.
        ((FIXED_ONCE, 2000, None), use((5000, None), (2000, None)), (5000, None)),
        # Another invoice took 500 more since: only the draft's 3000 come back.
        ((FIXED_ONCE, 1500, None), use((5000, None), (2000, None)), (4500, None)),
        # Never used before the draft (no remaining figure yet), untouched since.
        ((FIXED_ONCE, 0, None), use((None, None), (0, None)), (None, None)),
        # A recurring coupon: the period the draft spent comes back.
        ((RECURRING, None, 1), use((None, 2), (None, 1)), (None, 2)),
    ],
)
def test_the_drafts_share_is_given_back(
    now: tuple[AppliedCoupon, int | None, int | None],
    taken: Any,
    expected: tuple[int | None, int | None],
) -> None:
    coupon, remaining, periods = now
    current = AppliedCoupon(
        coupon.coupon_type,
        coupon.frequency,
        amount_cents=coupon.amount_cents,
        amount_cents_remaining=remaining,
        frequency_duration_remaining=periods,
        terminated=True,
    )
    back = coupon_given_back(current, taken)
    assert (back.amount_cents_remaining, back.frequency_duration_remaining) == expected
    assert not back.terminated
