"""The aggregator's catalog view in-process: bytes per subscription, load time, lookups, and
what a plan, metric or customer change costs, at S subscriptions.

    .venv/bin/python -m bench.catalog_memory [--subscriptions 100000] [--customers 0]
        [--owned K/P]
    PYTHONPATH=/work/main/src .venv/bin/python -m bench.catalog_memory   # another tree

The records are those of `bench.memory` (its plan with two charges; one customer, or with
`--customers C` that many, the subscriptions spread over them), encoded as on the topic and
read one by one as the worker's catalog reader reads them (`CatalogView.take`: decoded,
or skipped by their headers), 500 between two `gc.freeze()`.
With `--owned K/P`, the view keeps the subscriptions of K of P events partitions, as a
worker of several does (it reads every record and keeps about K/P of them). Measured: the
resident memory (RSS) the view grew by and the Python objects it holds (tracemalloc, a
second load), divided by the subscriptions it holds; microseconds a record to apply (every
record read, kept or not); a lookup's time
(`terms`, every subscription once, then again); and for a change of the plan, of a metric
and of the customer, the time to apply it, to list the subscriptions it concerns
(`affected`), and to take every subscription's terms again after it (the cost the change
leaves for their next events). Without `--owned` it uses only what the view offered
before issue 15's round, so it runs against an older tree too (with it, from `a83cbac`).
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/catalog_memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import time
import tracemalloc
import uuid
from typing import Any

from aggregator.catalog_view import CatalogView
from aggregator.sample_catalog import SampleCatalog
from bench import report
from bench.memory import bench_plan, subscription
from bench.workload import COUNT_CODE, SUM_CODE, current_period_start
from meterflow.catalog import CatalogRecord
from meterflow.settings import Settings


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


Encoded = tuple[bytes, list[tuple[str, bytes]]]  # a record's value and headers


def records(organization_id: str, subscriptions: int, customers: int) -> list[Encoded]:
    sample = bench_plan(organization_id)
    for c in range(customers):
        sample.customer(f"bench-customer-{c}", timezone="Europe/Paris")
    start = current_period_start().isoformat()
    found = [on_topic(record) for record in sample.records]
    for i in range(subscriptions):
        customer = f"bench-customer-{i % customers}" if customers else "bench-customer"
        record = SampleCatalog(organization_id).subscription(
            subscription(i), customer=customer, plan_code="bench-plan", subscription_at=start
        )
        found.append(on_topic(record))
    return found


def on_topic(record: CatalogRecord) -> Encoded:
    """The record's value and headers (an older tree's records carry none)."""
    return record.encode(), getattr(record, "headers", [])


def load(view: CatalogView, encoded: list[Encoded]) -> None:
    take = getattr(view, "take", None)  # (an older tree: decode and apply)
    for i, (value, headers) in enumerate(encoded):
        if take is None:
            view.apply(CatalogRecord.decode(value))
        else:
            take(value, headers)
        if i % 500 == 499:
            gc.freeze()  # as the worker's reader does while it loads
    gc.freeze()


def take_all(view: CatalogView) -> float:
    started = time.perf_counter()
    for organization_id, external_id in view.subscription_ids():
        view.terms(organization_id, external_id)
    return time.perf_counter() - started


def change_cost(view: CatalogView, record: CatalogRecord, count: int) -> dict[str, float]:
    started = time.perf_counter()
    view.apply(record)
    applied = time.perf_counter() - started
    started = time.perf_counter()
    concerned = len(list(view.affected(record)))
    listed = time.perf_counter() - started
    renewed = take_all(view)
    return {
        "apply_ms": round(applied * 1e3, 3),
        "affected": concerned,
        "affected_ms": round(listed * 1e3, 1),
        "renew_all_ms": round(renewed * 1e3, 1),
        "renew_us_per_subscription": round(renewed / count * 1e6, 2),
    }


def owned_of(text: str) -> tuple[int, int]:
    """`K/P` as (K, P): K of P partitions, 0 < K <= P."""
    owned, _, partitions = text.partition("/")
    try:
        found = int(owned), int(partitions)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write K/P, e.g. 2/4") from None
    if not 0 < found[0] <= found[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be within 1..P")
    return found


def new_view(owned: tuple[int, int] | None) -> CatalogView:
    if owned is None:
        return CatalogView()
    view = CatalogView(owned[1])
    view.kept = frozenset(range(owned[0]))
    return view


def measure(subscriptions: int, customers: int, owned: tuple[int, int] | None) -> dict[str, Any]:
    organization_id = str(uuid.uuid4())
    encoded = records(organization_id, subscriptions, customers)
    plan_records = len(encoded) - subscriptions
    gc.collect()
    view = new_view(owned)
    load(view, encoded[:plan_records])
    before = rss()
    started = time.perf_counter()
    load(view, encoded[plan_records:])
    loaded = time.perf_counter() - started
    first = take_all(view)
    grown = rss() - before
    again = take_all(view)
    held = len(view)
    traced = new_view(owned)
    load(traced, encoded[:plan_records])
    tracemalloc.start()
    load(traced, encoded[plan_records:])
    take_all(traced)
    objects = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del traced
    sample = bench_plan(organization_id)
    changes = {
        "plan": next(r for r in sample.records if r.kind == "plan"),
        "metric": next(r for r in sample.records if r.kind == "billable_metric"),
        "customer": sample.records[1],
    }
    costs = {}
    for name, record in changes.items():
        newer = CatalogRecord(record.kind, record.lago_id, record.organization_id, 2, record.body)
        costs[name] = change_cost(view, newer, held)
    return {
        "subscriptions": subscriptions,
        "customers": customers or 1,
        "owned": "all" if owned is None else f"{owned[0]}/{owned[1]}",
        "held": held,
        "rss_bytes_per_subscription": round(grown / held),
        "object_bytes_per_subscription": round(objects / held),
        "load_us_per_record": round(loaded / subscriptions * 1e6, 2),
        "first_terms_us": round(first / held * 1e6, 2),
        "lookup_us": round(again / held * 1e6, 2),
        "changes": costs,
        "metric_codes": [COUNT_CODE, SUM_CODE],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=0)
    parser.add_argument("--owned", type=owned_of, default=None, metavar="K/P")
    args = parser.parse_args()
    found = measure(args.subscriptions, args.customers, args.owned)
    flat = {k: v for k, v in found.items() if k not in ("changes", "metric_codes")}
    report.print_table(list(flat), [list(flat.values())])
    print()
    costs = found["changes"]
    first = next(iter(costs.values()))
    report.print_table(["change", *first], [[name, *c.values()] for name, c in costs.items()])
    machine = asyncio.run(report.machine_facts(Settings.from_env()))
    report.write_record("catalog-memory", machine, found, module="catalog_memory")


if __name__ == "__main__":
    main()
