"""Creating meterflow's Kafka topics with the partition count chosen once per deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from meterflow.errors import StackError
from meterflow.settings import Topics

log = logging.getLogger(__name__)


def topic_specs(topics: Topics, partitions: int) -> list[NewTopic]:
    """Events and closed periods are keyed by subscription, so both share the partition count
    (a subscription's events and its closed periods then live on the same partition number).
    The catalog is compacted: the latest version of each object is all a reader needs."""
    return [
        NewTopic(topics.events, partitions, 1),
        NewTopic(topics.catalog, 1, 1, topic_configs={"cleanup.policy": "compact"}),
        NewTopic(topics.periods_closed, partitions, 1),
        NewTopic(topics.dead_letter, 1, 1),
    ]


async def ensure_topics(
    bootstrap: str, topics: Topics, partitions: int, *, timeout: float = 60.0
) -> None:
    """Create the topics that do not exist yet, retrying while the broker is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topic_specs(topics, partitions) if t.name not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
                log.info("kafka.topics_created topics=%s", ",".join(t.name for t in missing))
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if time.monotonic() > deadline:
                raise StackError(
                    f"could not create topics on Kafka at {bootstrap}: {exc!r}; is the broker "
                    "up? (`meterflow up` starts one; KAFKA_BOOTSTRAP_SERVERS points elsewhere)"
                ) from exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    """Delete a deployment's topics (tests clean up after themselves with this)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        names = [t.name for t in topic_specs(topics, 1) if t.name in existing]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def reader(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer outside any group (it commits nothing, moves no one's offsets), from the
    earliest offset unless told where."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's stop() of a consumer without a group leaks the cancellation of
            # its own internal task; pass on only a cancellation aimed at us.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
