"""Scratch usage counts the events topic as the pipeline does (packs, first transaction id
wins, events outside the subscription or without a charge left out), and reconcile reports
exactly the fields a stored invoice disagrees on, checking only units and events of an
invoice priced under a plan that changed since."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from operations.reconcile import reconcile_invoice
from operations.terms import ChargeTerms, StoredFee, StoredInvoice, Terms
from operations.usage import ScratchUsage

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
# The catalog as it was when the invoice was issued (2 December) and had been since October.
CATALOG_AT = datetime(2026, 10, 1, tzinfo=UTC)
ISSUED = datetime(2026, 12, 2, tzinfo=UTC)
CALLS = ChargeTerms(
    "ch-calls", "standard", {"amount": "0.01"}, "calls", "count_agg", None, CATALOG_AT
)
GB = ChargeTerms("ch-gb", "standard", {"amount": "0.50"}, "gb", "sum_agg", "gb", CATALOG_AT)
TERMS = Terms(
    subscription_id="s-1",
    external_id="sub-1",
    organization_id="org-1",
    external_customer_id="acme",
    customer_timezone=None,
    organization_timezone="UTC",
    currency="USD",
    interval="monthly",
    billing_time="calendar",
    plan_amount_cents=1000,
    pay_in_advance=False,
    subscription_at=START,
    terminated_at=None,
    plan_updated_at=CATALOG_AT,
    charges=(CALLS, GB),
)


def event(txn: str, code: str = "calls", at: str = "2026-11-10T00:00:00Z", **props: str) -> dict:
    found = {
        "organization_id": "org-1",
        "transaction_id": txn,
        "external_subscription_id": "sub-1",
        "code": code,
        "timestamp": at,
    }
    if props:
        found["properties"] = props
    return found


def recount() -> ScratchUsage:
    scratch = ScratchUsage([TERMS])
    records = [
        [event("t1"), event("t2"), event("g1", "gb", gb="2.5")],  # a pack
        event("t1"),  # a client retry
        event("t3", at="2026-10-31T23:59:59Z"),  # before the subscription
        event("t4", code="unknown"),
        {**event("t5"), "organization_id": "org-2"},  # another organization
        b"{not json",
    ]
    for value in records:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        scratch.add_record(raw, int(datetime(2026, 11, 10, tzinfo=UTC).timestamp() * 1000))
    return scratch


def test_scratch_usage_counts_as_the_pipeline_does() -> None:
    scratch = recount()
    calls = scratch.usage[("s-1", "ch-calls", START)]
    gb = scratch.usage[("s-1", "ch-gb", START)]
    assert (calls.state.result(), calls.state.events_count) == (Decimal(2), 2)
    assert (gb.state.result(), gb.state.events_count) == (Decimal("2.5"), 1)
    assert calls.period.end == END
    assert dict(scratch.counts) == {
        "applied": 3,
        "duplicate": 1,
        "outside_subscription": 1,
        "no_charge": 1,
        "not_selected": 1,
        "invalid": 1,
    }


def stored_invoice(calls_cents: int, total: int) -> StoredInvoice:
    def fee(
        kind: str, charge: str | None, code: str, cents: int, units: str, n: int | None
    ) -> StoredFee:
        return StoredFee(
            f"f-{code}",
            kind,
            charge,
            code,
            cents,
            Decimal(units),
            n,
            START,
            END,
            START if charge else None,
            False,
        )

    fees = (
        fee("subscription", None, "basic", 1000, "1", None),
        fee("charge", "ch-calls", "calls", calls_cents, "2", 2),
        fee("charge", "ch-gb", "gb", 125, "2.5", 1),
    )
    fees_cents = sum(f.amount_cents for f in fees)
    return StoredInvoice(
        "i-1",
        "ACM-1",
        "s-1",
        "org-1",
        "finalized",
        "USD",
        START,
        END,
        fees_cents,
        0,
        0,
        fees_cents,
        fees_cents,
        0,
        0,
        total,
        ISSUED,
        fees,
    )


def test_reconcile_finds_nothing_on_a_right_invoice() -> None:
    found = reconcile_invoice(stored_invoice(2, 1127), TERMS, recount())
    assert (found.differences, found.recomputed_total_cents) == ([], 1127)


def test_reconcile_names_each_field_that_differs() -> None:
    wrong = stored_invoice(3, 1127)  # one cent too many on calls, total left as it was
    wrong = replace(
        wrong,
        fees_amount_cents=1127,
        sub_total_excluding_taxes_amount_cents=1127,
        sub_total_including_taxes_amount_cents=1127,
    )
    found = reconcile_invoice(wrong, TERMS, recount())
    assert [(d.line, d.field, d.stored, d.recomputed) for d in found.differences] == [
        ("calls", "amount_cents", "3", "2"),
    ]


def test_a_plan_changed_since_the_invoice_leaves_its_amounts_unchecked() -> None:
    later = datetime(2026, 12, 15, tzinfo=UTC)
    dearer = replace(CALLS, properties={"amount": "0.05"})
    repriced = replace(TERMS, plan_amount_cents=2000, plan_updated_at=later, charges=(dearer, GB))
    found = reconcile_invoice(stored_invoice(2, 1127), repriced, recount())
    assert (found.differences, found.recomputed_total_cents) == ([], 1127)
    assert [note.split(":")[0] for note in found.unchecked] == ["basic", "calls", "gb"]
    assert all("the plan changed at 2026-12-15" in note for note in found.unchecked)

    # Units still follow from the events: a wrong count is still found.
    wrong = stored_invoice(2, 1127)
    calls = replace(wrong.fees[1], events_count=3)
    wrong = replace(wrong, fees=(wrong.fees[0], calls, wrong.fees[2]))
    found = reconcile_invoice(wrong, repriced, recount())
    assert [(d.line, d.field) for d in found.differences] == [("calls", "events_count")]

    # A metric changed since: its fee is taken as stored whole.
    recounted = replace(GB, aggregation_type="max_agg", metric_updated_at=later)
    changed = replace(repriced, charges=(dearer, recounted))
    found = reconcile_invoice(stored_invoice(2, 1127), changed, recount())
    assert found.differences == []
    assert [n for n in found.unchecked if n.startswith("gb")] == [
        "gb: taken as stored, its metric changed at 2026-12-15T00:00:00+00:00, "
        "after the invoice was issued"
    ]
