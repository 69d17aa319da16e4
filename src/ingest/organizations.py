"""Creating an organization with its first API key (`meterflow create-organization`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ingest import repository
from ingest.auth import key_digest, new_api_key
from ingest.broker import Broker
from ingest.catalog_publisher import CatalogPublisher
from ingest.errors import BrokerUnavailable
from ingest.metrics import IngestMetrics
from ingest.payload import is_timezone
from ingest.repository import Organization
from meterflow.catalog import CatalogKind, CatalogRecord
from meterflow.errors import ConfigurationError
from meterflow.settings import Settings

log = logging.getLogger(__name__)


def organization_body(org: Organization) -> dict[str, object]:
    return {
        "lago_id": str(org.id),
        "name": org.name,
        "timezone": org.timezone,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def create_organization(
    settings: Settings, name: str, timezone: str = "UTC", *, publish_timeout: float = 10.0
) -> tuple[Organization, str]:
    """Create an organization and its API key; returns both (the key is shown only once).

    The organization's catalog record is written to the outbox in the same transaction and
    sent right away when Kafka answers, else by the next drain of a running ingest service.
    """
    if not name.strip():
        raise ConfigurationError("an organization needs a non-empty --name")
    if not is_timezone(timezone):
        raise ConfigurationError(f"{timezone!r} is not an IANA timezone (e.g. Europe/Paris)")
    key = new_api_key()
    pool = await repository.create_pool(settings.dsn, schema=settings.db_schema, size=1)
    try:
        async with repository.unit_of_work(pool) as conn:
            org = await repository.insert_organization(conn, name, timezone, key_digest(key))
            await repository.enqueue(
                conn,
                CatalogRecord(
                    kind=CatalogKind.ORGANIZATION,
                    lago_id=str(org.id),
                    organization_id=str(org.id),
                    version=1,
                    body=organization_body(org),
                ),
            )
        metrics = IngestMetrics()
        broker = Broker(settings.bootstrap_servers, timeout=publish_timeout, metrics=metrics)
        try:
            await CatalogPublisher(pool, broker, settings.topics.catalog, metrics).drain()
        except BrokerUnavailable:
            log.warning("organization.publish_deferred organization_id=%s", org.id)
        finally:
            await broker.close()
    finally:
        await pool.close()
    log.info("organization.created organization_id=%s timezone=%s", org.id, timezone)
    return org, key
