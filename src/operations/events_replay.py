"""Reading the whole events topic into scratch usage, with a progress bar (events/s, ETA)
on stderr so that stdout stays clean for `--json`."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from meterflow.settings import Settings
from operations.kafka_reading import partitions_of, read_range, reader
from operations.terms import Terms
from operations.usage import ScratchUsage


class RateColumn(ProgressColumn):
    """Records per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed or 0:,.0f} records/s")


async def replay_events(settings: Settings, terms: list[Terms], *, progress: bool) -> ScratchUsage:
    """Fold every record of the events topic, beginning to current end, into scratch state."""
    scratch = ScratchUsage(terms)
    async with reader(settings.bootstrap_servers) as consumer:
        tps = await partitions_of(consumer, settings.topics.events)
        if not tps:
            return scratch
        start = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        total = sum(end[tp] - start[tp] for tp in tps)
        show = progress and sys.stderr.isatty()
        with Progress(
            TextColumn("replaying {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not show,
            transient=True,
        ) as bar:
            task = bar.add_task(settings.topics.events, total=total)
            async for record in read_range(consumer, start, end):
                scratch.add_record(record.value, record.timestamp)
                bar.advance(task)
    return scratch
