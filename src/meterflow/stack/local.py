"""The whole local stack: embedded Kafka and Postgres (unless external ones are given),
the database schema and the topics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from meterflow.db import migrate
from meterflow.settings import Settings
from meterflow.stack.kafka import LocalKafka
from meterflow.stack.postgres import LocalPostgres
from meterflow.topics import ensure_topics


@dataclass(frozen=True, slots=True)
class LocalStack:
    """What `meterflow up` and the test fixtures start; external services are left alone."""

    settings: Settings
    kafka: LocalKafka | None
    postgres: LocalPostgres | None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStack:
        kafka = None
        if settings.kafka_bootstrap is None:
            kafka = LocalKafka(
                home=settings.state_dir / "kafka",
                port=settings.kafka_port,
                controller_port=settings.kafka_controller_port,
                partitions=settings.partitions,
            )
        postgres = None
        if settings.database_url is None:
            postgres = LocalPostgres(
                home=settings.state_dir / "postgres", port=settings.postgres_port
            )
        return cls(settings=settings, kafka=kafka, postgres=postgres)

    def running(self) -> dict[str, int | None]:
        """pid of each embedded component (None when stopped); external ones are absent."""
        found: dict[str, int | None] = {}
        if self.kafka is not None:
            found["kafka"] = self.kafka.pid()
        if self.postgres is not None:
            found["postgres"] = self.postgres.pid()
        return found

    def start(self) -> None:
        """Start what is embedded and not running yet, then migrate and create topics."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        if self.postgres is not None:
            self.postgres.start()
        if self.kafka is not None:
            self.kafka.start()
        asyncio.run(self.prepare())

    async def prepare(self) -> list[str]:
        """Apply the migrations the database lacks (returned) and create missing topics."""
        s = self.settings
        applied = await migrate(s.dsn, schema=s.db_schema)
        await ensure_topics(s.bootstrap_servers, s.topics, s.partitions)
        return applied

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()
        if self.postgres is not None:
            self.postgres.stop()
