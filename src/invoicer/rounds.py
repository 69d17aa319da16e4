"""Which messages of a poll go together: a round is the late usage to apply first, then the
closed periods to invoice as one batch (one read, one write). Pure: no I/O.

A subscription's messages stay in order: a message waits while an earlier one of its
subscription is not done (late usage prices on top of the invoices of earlier periods, and a
close bills the late usage that waits before it). A round invoices at most one period per
customer, as the message names it (`organization_id`, `external_customer_id`): the customer's
sequence, coupons, wallets and credit notes then change once per write, each guarded by the
state it was priced with. The invoicer checks the customer again once read (a message may
name it wrongly) and leaves a second one for the next round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from invoicing.closed_period import LateUsage, PeriodClosed


@dataclass(frozen=True, slots=True)
class Round:
    """Indexes (into the pending messages) of the late usage to apply, in order, and of the
    closed periods to invoice together."""

    late: tuple[int, ...]
    closes: tuple[int, ...]


def next_round(pending: Sequence[PeriodClosed | LateUsage], limit: int) -> Round:
    """The next round of `pending` (in offset order): every message that no earlier pending
    message of its subscription (or period) holds back, closes one per customer and at most
    `limit` of them."""
    held: set[str] = set()
    customers: set[tuple[str, str]] = set()
    late: list[int] = []
    closes: list[int] = []
    for i, message in enumerate(pending):
        subscription, period = message.subscription_id, message.period_key
        free = subscription not in held and period not in held
        held.add(subscription)  # whatever comes later for them waits for this one
        held.add(period)
        if not free:
            continue
        if isinstance(message, LateUsage):
            late.append(i)
            continue
        customer = (message.organization_id, message.external_customer_id)
        if customer in customers:
            continue
        customers.add(customer)
        closes.append(i)
        if len(closes) == limit:
            break  # the rest waits for the next round
    return Round(tuple(late), tuple(closes))
