"""`meterflow create-organization`: the organization and its key (`store.organizations`),
its catalog record sent right away when Kafka answers, else by a running API's next drain."""

from __future__ import annotations

import logging

from ingest.broker import Broker
from meterflow.settings import Settings
from store import database, organizations
from store.catalog_publisher import CatalogPublisher
from web.context import Organization
from web.errors import BrokerUnavailable
from web.metrics import IngestMetrics

log = logging.getLogger(__name__)


async def create_organization(
    settings: Settings, name: str, timezone: str = "UTC", *, publish_timeout: float = 10.0
) -> tuple[Organization, str]:
    """Create an organization and its API key; returns both (the key is shown only once)."""
    pool = await database.create_pool(settings.dsn, schema=settings.db_schema, size=1)
    try:
        org, key = await organizations.open_organization(pool, name, timezone)
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
