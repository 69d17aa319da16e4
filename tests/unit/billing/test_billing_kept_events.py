"""A sum that keeps only the prefix of events its percentage charge reads prices exactly as
one that keeps them all, whatever the arrival order, batching, snapshots and merges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.aggregations import SumAggregation, aggregation_from_dict
from billing.charge_models import kept_events, price_state
from billing.periods import BillingPeriod

PERIOD = BillingPeriod(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))

amounts = st.decimals(min_value=0, max_value=500, places=2, allow_nan=False, allow_infinity=False)
# (value, second of the period, transaction id): distinct ids, any arrival order.
events = st.lists(
    st.tuples(amounts, st.integers(min_value=0, max_value=86_400)), min_size=0, max_size=60
).map(lambda rows: [(v, s, f"t{i:03d}") for i, (v, s) in enumerate(rows)])
terms = st.sampled_from(
    [
        {"rate": "1.2", "fixed_amount": "0.10", "free_units_per_events": 3},
        {"rate": "1", "fixed_amount": "0.5", "free_units_per_total_aggregation": "250"},
        {
            "rate": "1.2",
            "fixed_amount": "0.10",
            "free_units_per_events": 2,
            "free_units_per_total_aggregation": "500",
        },
        {"rate": "2", "free_units_per_events": 1, "per_transaction_min_amount": "1"},
    ]
)


def fold(rows: list[tuple[Decimal, int, str]], properties: dict[str, object], every: int) -> str:
    """Price the rows folded into a kept sum, snapshotted and restored every `every` events
    (as the aggregator writes its ledger once per batch), split in two merged halves."""
    kept = kept_events("percentage", properties)
    halves = []
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        state = SumAggregation.initialize(PERIOD, keep_events=True)
        state.keep_events(kept)
        for index, (value, second, txn) in enumerate(half):
            state.add(value, PERIOD.start + timedelta(seconds=second), txn)
            if index % every == every - 1:
                state.compact()
                restored = aggregation_from_dict(state.to_dict())
                assert isinstance(restored, SumAggregation)
                restored.keep_events(kept)
                state = restored
        halves.append(aggregation_from_dict(state.to_dict()))
    merged = halves[0].merge(halves[1])
    return str(price_state("percentage", properties, merged).amount)


@settings(max_examples=300, deadline=None)
@given(rows=events, properties=terms, every=st.integers(min_value=1, max_value=7))
def test_compaction_never_changes_the_price(
    rows: list[tuple[Decimal, int, str]], properties: dict[str, object], every: int
) -> None:
    everything = SumAggregation.initialize(PERIOD, keep_events=True)
    for value, second, txn in rows:
        everything.add(value, PERIOD.start + timedelta(seconds=second), txn)
    expected = str(price_state("percentage", properties, everything).amount)
    assert fold(rows, properties, every) == expected


def test_a_long_period_keeps_only_the_free_prefix() -> None:
    properties: dict[str, object] = {"rate": "1", "fixed_amount": "0.1", "free_units_per_events": 3}
    state = SumAggregation.initialize(PERIOD, keep_events=True)
    state.keep_events(kept_events("percentage", properties))
    for i in range(20_000):
        state.add(Decimal(1), PERIOD.start + timedelta(seconds=20_000 - i), f"t{i:05d}")
    snapshot = state.to_dict()
    assert len(snapshot["events"]) == 3  # type: ignore[arg-type]
    assert snapshot["tail"] == [19_997, "19997"]
    # 3 free, then 1 % of 19,997 and 19,997 fixed fees of 0.10: 199.97 + 1,999.70.
    assert price_state("percentage", properties, state).amount == Decimal("2199.67")
