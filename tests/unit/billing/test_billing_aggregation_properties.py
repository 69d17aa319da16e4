"""Merging aggregation states is associative and indifferent to how events were batched."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.aggregations import AGGREGATIONS, Aggregation, SumAggregation, aggregation_from_dict
from billing.periods import BillingPeriod

PERIOD = BillingPeriod(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))

Event = tuple[Decimal | str | None, datetime, str]

values = st.decimals(
    min_value=Decimal(-1_000_000),
    max_value=Decimal(1_000_000),
    places=4,
    allow_nan=False,
    allow_infinity=False,
)
moments = st.integers(min_value=0, max_value=31 * 86_400 * 1_000_000 - 1).map(
    lambda us: PERIOD.start + timedelta(microseconds=us)
)
ids = st.text(alphabet="abcdef", min_size=1, max_size=3)


def events_for(kind: str) -> st.SearchStrategy[list[Event]]:
    if kind == "count_agg":
        value: st.SearchStrategy[Decimal | str | None] = st.none()
    elif kind == "unique_count_agg":
        value = st.sampled_from(["a", "b", "c", "1", "2.5", "true"])
    else:
        value = values
    return st.lists(st.tuples(value, moments, ids), max_size=12)


def state_of(kind: str, events: list[Event]) -> Aggregation:
    cls = AGGREGATIONS[kind]
    state = cls.initialize(PERIOD)
    for value, timestamp, transaction_id in events:
        state.add(value, timestamp, transaction_id)
    return state


def through_json(state: Aggregation) -> Aggregation:
    return aggregation_from_dict(json.loads(json.dumps(state.to_dict())))


def same(a: Aggregation, b: Aggregation) -> None:
    assert a.result() == b.result()
    assert a.events_count == b.events_count


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
def test_merge_is_associative_and_batching_does_not_matter(kind: str) -> None:
    @PROPERTY_SETTINGS
    @given(a=events_for(kind), b=events_for(kind), c=events_for(kind))
    def check(a: list[Event], b: list[Event], c: list[Event]) -> None:
        sa, sb, sc = state_of(kind, a), state_of(kind, b), state_of(kind, c)
        left = sa.merge(sb).merge(sc)
        right = sa.merge(sb.merge(sc))
        one_by_one = state_of(kind, a + b + c)
        same(left, right)
        same(left, one_by_one)
        # Snapshots in between change nothing either.
        via_json = through_json(through_json(sa).merge(through_json(sb))).merge(through_json(sc))
        same(via_json, one_by_one)
        assert through_json(one_by_one).to_dict() == one_by_one.to_dict()
        # Merging never mutates its operands.
        same(sa, state_of(kind, a))

    check()


@PROPERTY_SETTINGS
@given(a=events_for("sum_agg"), b=events_for("sum_agg"))
def test_kept_event_amounts_do_not_depend_on_batching(a: list[Event], b: list[Event]) -> None:
    def kept(events: list[Event]) -> SumAggregation:
        state = SumAggregation.initialize(PERIOD, keep_events=True)
        for value, timestamp, transaction_id in events:
            state.add(value, timestamp, transaction_id)
        return state

    merged = kept(a).merge(kept(b))
    assert merged.event_amounts() == kept(a + b).event_amounts()
    assert aggregation_from_dict(merged.to_dict()).to_dict() == kept(b + a).to_dict()


@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
def test_add_many_is_one_add_per_event(kind: str) -> None:
    """The aggregator folds a batch's events of one state in one `add_many` call."""

    @PROPERTY_SETTINGS
    @given(events_for(kind), events_for(kind))
    def check(before: list[Event], batch: list[Event]) -> None:
        one_by_one = state_of(kind, before + batch)
        at_once = state_of(kind, before)
        at_once.add_many(batch)
        assert at_once.to_dict() == one_by_one.to_dict()

    check()


@PROPERTY_SETTINGS
@given(events_for("sum_agg"))
def test_add_many_keeps_events_like_add(batch: list[Event]) -> None:
    one_by_one = SumAggregation.initialize(PERIOD, keep_events=True)
    for value, timestamp, transaction_id in batch:
        one_by_one.add(value, timestamp, transaction_id)
    at_once = SumAggregation.initialize(PERIOD, keep_events=True)
    at_once.add_many(batch)
    assert at_once.to_dict() == one_by_one.to_dict()
    assert at_once.event_amounts() == one_by_one.event_amounts()
