"""Consumer lag of every consumer group reading the deployment's topics: per partition, the
offset lag (records not yet committed) and the time lag (how long ago the newest applied
record was accepted; how long the oldest waiting one has waited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from meterflow.settings import Topics
from operations.kafka_reading import partitions_of, reader, records_at


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One consumer group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # the next offset the group will read; None: never committed
    end: int  # the offset the next record written will get
    newest_applied_at: datetime | None  # accepted time of the record at committed - 1
    oldest_waiting_at: datetime | None  # accepted time of the record at committed

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)

    def applied_age(self, now: datetime) -> float | None:
        """Seconds since the newest applied record was accepted."""
        at = self.newest_applied_at
        return None if at is None else max(0.0, (now - at).total_seconds())

    def waiting_seconds(self, now: datetime) -> float:
        """Seconds the oldest record not yet applied has waited (0 when caught up)."""
        at = self.oldest_waiting_at
        return 0.0 if self.lag <= 0 or at is None else max(0.0, (now - at).total_seconds())


def watched_topics(topics: Topics) -> tuple[str, ...]:
    return (topics.events, topics.catalog, topics.periods_closed, topics.dead_letter)


async def group_offsets(
    bootstrap: str, topics: Topics, groups: list[str] | None = None
) -> dict[str, dict[TopicPartition, int]]:
    """Committed offsets on the deployment's topics, per group (every group that committed
    on one of them, unless `groups` names them)."""
    watched = set(watched_topics(topics))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        if groups is None:
            groups = sorted(str(g[0]) for g in await admin.list_consumer_groups())
        found: dict[str, dict[TopicPartition, int]] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            mine = {
                tp: meta.offset
                for tp, meta in offsets.items()
                if tp.topic in watched and meta.offset >= 0
            }
            if mine:
                found[group] = mine
        return found
    finally:
        await admin.close()


def _accepted_at(record: Any) -> datetime | None:
    if record is None:
        return None
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


async def consumer_lag(
    bootstrap: str, topics: Topics, groups: list[str] | None = None
) -> list[PartitionLag]:
    """Lag of each group on every partition of each topic it reads, sorted."""
    committed_by_group = await group_offsets(bootstrap, topics, groups)
    rows: list[PartitionLag] = []
    async with reader(bootstrap) as consumer:
        for group, committed in sorted(committed_by_group.items()):
            tps: list[TopicPartition] = []
            for topic in sorted({tp.topic for tp in committed}):
                tps.extend(await partitions_of(consumer, topic))
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            position = {tp: committed.get(tp) for tp in tps}
            applied = await records_at(
                consumer,
                {tp: off - 1 for tp, off in position.items() if off and off - 1 >= starts[tp]},
            )
            waiting = await records_at(
                consumer,
                {
                    tp: max(off or 0, starts[tp])
                    for tp, off in position.items()
                    if max(off or 0, starts[tp]) < ends[tp]
                },
            )
            for tp in tps:
                rows.append(
                    PartitionLag(
                        group=group,
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=position[tp],
                        end=ends[tp],
                        newest_applied_at=_accepted_at(applied.get(tp)),
                        oldest_waiting_at=_accepted_at(waiting.get(tp)),
                    )
                )
    return rows
