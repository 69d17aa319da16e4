"""Rounds: a subscription's messages stay in order, a round invoices one period per customer
and at most its limit, late usage goes before the closes of its round."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from invoicer.rounds import Round, next_round
from invoicing.closed_period import LateUsage, PeriodClosed

ORG = "00000000-0000-0000-0000-00000000000a"
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


def close(subscription: str, customer: str, month: int = 1) -> PeriodClosed:
    return PeriodClosed(
        period_key=f"{subscription}:{month}",
        organization_id=ORG,
        subscription_id=subscription,
        external_subscription_id=subscription,
        external_customer_id=customer,
        plan_code="p",
        currency="EUR",
        period_start=START,
        period_end=END,
        terminated=False,
        charges=(),
        adjustments=(),
        closed_at=None,
    )


def late(subscription: str, month: int = 1) -> LateUsage:
    return LateUsage(
        late_key=f"late-{subscription}-{month}",
        period_key=f"{subscription}:{month}",
        organization_id=ORG,
        subscription_id=subscription,
        external_subscription_id=subscription,
        currency="EUR",
        period_start=START,
        period_end=END,
        charges=(),
    )


@pytest.mark.parametrize(
    ("pending", "expected"),
    [
        # Different subscriptions and customers: all together.
        ([close("a", "1"), close("b", "2"), close("c", "3")], Round((), (0, 1, 2))),
        # A subscription's second period waits for its first.
        ([close("a", "1", 1), close("a", "1", 2), close("b", "2")], Round((), (0, 2))),
        # A customer's second subscription waits for the next round.
        ([close("a", "1"), close("b", "1"), close("c", "2")], Round((), (0, 2))),
        # The same close twice: the repeat waits (and is then a duplicate).
        ([close("a", "1"), close("a", "1")], Round((), (0,))),
        # Late usage of a period waits for that period's close, then goes first.
        ([close("a", "1"), late("a"), close("b", "2")], Round((), (0, 2))),
        ([late("a"), close("a", "1", 2), close("b", "2")], Round((0,), (2,))),
        # Another customer's late usage and closes go together.
        ([late("a"), close("b", "2")], Round((0,), (1,))),
        # A held message holds what follows it for the same subscription.
        ([close("a", "1"), close("b", "1"), close("b", "1", 2)], Round((), (0,))),
    ],
)
def test_next_round(pending: list[PeriodClosed | LateUsage], expected: Round) -> None:
    assert next_round(pending, limit=100) == expected


def test_a_round_holds_at_most_its_limit() -> None:
    pending: list[PeriodClosed | LateUsage] = [close(str(i), str(i)) for i in range(10)]
    assert next_round(pending, limit=4).closes == (0, 1, 2, 3)
    assert next_round(pending, limit=1).closes == (0,)


def test_every_message_gets_a_round_in_order() -> None:
    """Taking rounds until nothing is left schedules each message once, and each
    subscription's messages in their order."""
    pending: list[PeriodClosed | LateUsage] = [
        close("a", "1", 1),
        close("b", "1", 1),
        late("a", 1),
        close("a", "1", 2),
        close("c", "2", 1),
        close("b", "1", 2),
    ]
    order: list[int] = []
    left = list(range(len(pending)))
    while left:
        plan = next_round([pending[i] for i in left], limit=100)
        taken = [left[i] for i in (*plan.late, *plan.closes)]
        assert taken
        order += taken
        left = [i for i in left if i not in taken]
    assert sorted(order) == list(range(len(pending)))
    for subscription in ("a", "b", "c"):
        mine = [i for i in order if pending[i].subscription_id == subscription]
        assert mine == sorted(mine)
