"""The aggregator's hot path alone, in-process: the records `bench/aggregator_throughput.py`
writes (same generator, same flags) applied the way a worker applies them, slice after
slice (`EventProcessor.apply_batch`, each slice's markers indexed, then written), on
in-memory stores (ledgers held as orjson bytes, as the worker's tables hold them) and with
the worker's garbage collector settings: no Kafka, no Faust, no changelog. A worker's
slices end after 0.02 s (`METERFLOW_AGGREGATOR_SLICE_SECONDS`); here after a fixed number
of records, so that the slices do not vary with the speed measured.

    .venv/bin/python -m bench.apply_path [--events 1500000] [--subscriptions 100]
        [--duplicates 0.05] [--pack 200] [--slice-records 40] [--repeat 3]
        [--compare-src DIR]

Each run is a fresh process (its own imports, so `--compare-src`'s tree runs its own code,
compiled when it was built): it loads the records, applies them all, and reports the CPU
seconds of the applying alone (`time.process_time`) and its counts. With `--compare-src`
the two trees alternate; the table gives each run's events per CPU second, the medians,
their ratio and the median of each repeat's own ratio (its two runs back to back: what the
machine's drift moves least). The counts of the two trees must be equal, else it fails (a
change that counts differently is no speed-up). This is the part of the worker's time that
the hot path's code decides, without the broker, Faust and the changelog. It is not free of
the machine: on this shared 2-core machine one tree's CPU seconds for the same work still
varied by up to 1.4x between runs.
Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/apply_path.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import inspect
import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from bench import report
from bench.aggregator_throughput import event_records, sample_catalog
from billing.events import wire_timestamp

ROOT = Path(__file__).resolve().parent.parent
ORG = "bench-org"
PARTITIONS = 4


def apply_all(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """In this process (a child run): the records of `path` applied as a worker applies
    them, in slices of `--slice-records`; CPU seconds of the applying and the counts."""
    import gc

    from aggregator.billing_domain import BillingDomain
    from aggregator.catalog_view import CatalogView
    from aggregator.compiled import why_interpreted
    from aggregator.markers import DedupeMarkers
    from aggregator.processing import EventProcessor, SourceMessage, Windows
    from aggregator.service import GC_THRESHOLDS
    from aggregator.settings import AggregatorSettings
    from aggregator.store import MemoryStore

    records = msgspec.msgpack.decode(Path(path).read_bytes(), type=list[tuple[int, bytes]])
    catalog = CatalogView()
    for record in sample_catalog(ORG, args.subscriptions).records:
        catalog.apply(record)
    agg = AggregatorSettings.from_env()
    windows = Windows(
        skew=timedelta(seconds=agg.clock_skew),
        hold=timedelta(seconds=agg.hold_window),
        late=timedelta(seconds=agg.late_window),
    )
    ledgers, segments = _stores(MemoryStore)
    markers = DedupeMarkers(segments)
    processor = EventProcessor(BillingDomain(), catalog, ledgers, markers, windows)
    offsets = [0] * PARTITIONS
    stamp = int(time.time() * 1000)
    messages = []
    for partition, value in records:
        messages.append(SourceMessage(partition, offsets[partition], None, value, stamp))
        offsets[partition] += 1
    counts: dict[str, int] = {}
    slices = 0
    gc.set_threshold(*GC_THRESHOLDS)  # the worker's (`aggregator.service`)
    gc.collect()
    gc.freeze()
    started, wall = time.process_time(), time.perf_counter()
    for at in range(0, len(messages), args.slice_records):
        result = processor.apply_batch(messages[at : at + args.slice_records], datetime.now(UTC))
        markers.index_batch(result.marks)
        processor.remember(result)
        for name, n in result.counts.items():
            counts[name] = counts.get(name, 0) + n
        slices += 1
    return {
        "hot_path": why_interpreted() or "compiled",
        "cpu_seconds": time.process_time() - started,
        "wall_seconds": time.perf_counter() - wall,
        "slices": slices,
        "counts": dict(sorted(counts.items())),
    }


def _stores(memory_store: Any) -> tuple[Any, Any]:
    """The ledgers' and the marker segments' stores, values encoded as a worker's tables hold
    them. A tree from before `MemoryStore(raw=True)` (`47a4eb2` and older) held values as
    given: its ledgers are encoded here, as its worker's tables encoded them."""
    if "raw" in inspect.signature(memory_store).parameters:
        return memory_store(), memory_store(raw=True)

    class Encoded(memory_store):  # type: ignore[misc]
        def get(self, key: str, partition: int | None = None) -> Any | None:
            raw = self.data.get(key)
            return None if raw is None else orjson.loads(raw)

        def put(self, partition: int, key: str, value: Any) -> None:
            super().put(partition, key, orjson.dumps(value))

    return Encoded(), memory_store()


def child_run(source: str, path: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in a fresh process importing `source` (a tree's `src`)."""
    env = {**os.environ, "PYTHONPATH": f"{source}:{ROOT}"}
    command = [sys.executable, "-m", "bench.apply_path", "--child", path]
    command += [
        "--subscriptions",
        str(args.subscriptions),
        "--slice-records",
        str(args.slice_records),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a run from {source} failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    this_tree = str(ROOT / "src")
    trees = [this_tree, *([args.compare_src] if args.compare_src else [])]
    timestamp = wire_timestamp(datetime.now(UTC))
    records = list(event_records(ORG, args, PARTITIONS, timestamp))
    runs: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile(suffix=".msgpack") as file:
        file.write(msgspec.msgpack.encode(records))
        file.flush()
        for repeat in range(args.repeat):
            for source in trees if repeat % 2 == 0 else trees[::-1]:
                found = child_run(source, file.name, args)
                found["source"] = "this tree" if source == this_tree else source
                found["events_per_cpu_second"] = round(args.events / found["cpu_seconds"], 1)
                found["load_average"] = report.load_average()
                runs.append(found)
                print(
                    f"{found['source']}: {found['events_per_cpu_second']:,.0f} events per CPU "
                    f"second ({found['hot_path']})",
                    file=sys.stderr,
                )
    counts = {json.dumps(r["counts"]) for r in runs}
    if len(counts) > 1:
        raise SystemExit(f"the trees counted differently: {sorted(counts)}")
    medians = {
        source: report.median(r["events_per_cpu_second"] for r in runs if r["source"] == source)
        for source in dict.fromkeys(r["source"] for r in runs)
    }
    ratio = pairs = None
    if args.compare_src:
        ratio = round(report.ratio(medians["this tree"], medians[args.compare_src]), 3)
        # Each repeat's two runs, one after the other: their ratio is what the machine's
        # drift over the whole invocation moves least.
        pairs = [
            round(report.ratio(*(r["events_per_cpu_second"] for r in sorted(pair, key=_ours))), 3)
            for pair in zip(runs[::2], runs[1::2], strict=True)
        ]
    return {
        "machine": {"cpus": os.cpu_count(), "git_commit": report.git_commit()},
        "events": args.events,
        "records": len(records),
        "subscriptions": args.subscriptions,
        "duplicate_share": args.duplicates,
        "events_per_request": args.pack,
        "slice_records": args.slice_records,
        "counts": runs[0]["counts"],
        "runs": runs,
        "medians_events_per_cpu_second": medians,
        "ratio_this_tree_to_other": ratio,
        "pair_ratios": pairs,
        "median_pair_ratio": None if pairs is None else report.median(pairs),
    }


def _ours(found: dict[str, Any]) -> int:
    """This tree's run first."""
    return 0 if found["source"] == "this tree" else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_500_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--duplicates", type=float, default=0.05)
    parser.add_argument("--pack", type=int, default=200, help="events per simulated request")
    parser.add_argument(
        "--slice-records",
        type=int,
        default=40,
        help="records a slice applies (a worker's slices are 0.02 s of events: about 2,000 "
        "here; fixed, so that both trees do the same slices' work)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each tree")
    parser.add_argument(
        "--compare-src",
        metavar="DIR",
        default="",
        help="also run another source tree (another commit's src), alternating with this one",
    )
    parser.add_argument("--child", metavar="RECORDS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(apply_all(args.child, args)))
        return
    result = run(args)
    columns = ["source", "hot_path", "cpu_seconds", "events_per_cpu_second", "slices"]
    report.print_table(
        columns,
        [[r[c] if c != "cpu_seconds" else round(r[c], 2) for c in columns] for r in result["runs"]],
    )
    print()
    rows = [[source, rate] for source, rate in result["medians_events_per_cpu_second"].items()]
    if result["ratio_this_tree_to_other"] is not None:
        rows.append(["ratio of the medians, this tree / other", result["ratio_this_tree_to_other"]])
        rows.append(["median of the repeats' ratios", result["median_pair_ratio"]])
    report.print_table(["median", "events per CPU second"], rows)
    report.write_record("apply_path", result["machine"], result)


if __name__ == "__main__":
    main()
