"""Lago's aggregation types (events to units), one module each, picked by their enum value."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from billing.aggregations.aggregation import Aggregation, EventValue
from billing.aggregations.count_agg import CountAggregation
from billing.aggregations.event_values import numeric_property, unique_property
from billing.aggregations.latest_agg import LatestAggregation
from billing.aggregations.max_agg import MaxAggregation
from billing.aggregations.sum_agg import SumAggregation
from billing.aggregations.unique_count_agg import UniqueCountAggregation
from billing.aggregations.weighted_sum_agg import WeightedSumAggregation

AGGREGATIONS: Mapping[str, type[Aggregation]] = MappingProxyType(
    {
        cls.aggregation_type: cls
        for cls in (
            CountAggregation,
            SumAggregation,
            MaxAggregation,
            UniqueCountAggregation,
            LatestAggregation,
            WeightedSumAggregation,
        )
    }
)


def aggregation_from_dict(data: Mapping[str, object]) -> Aggregation:
    """Rebuild any aggregation state from its snapshot, dispatching on its `type`."""
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation snapshot type {kind!r}")
    return AGGREGATIONS[kind].from_dict(data)


__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "CountAggregation",
    "EventValue",
    "LatestAggregation",
    "MaxAggregation",
    "SumAggregation",
    "UniqueCountAggregation",
    "WeightedSumAggregation",
    "aggregation_from_dict",
    "numeric_property",
    "unique_property",
]
