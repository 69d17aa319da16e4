"""`meterflow replay`: the events topic recounted in scratch state, per subscription, charge
and period, against what the issued invoices (closed periods) or the live ledgers (the
current period, from the aggregator's view) say."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson

from meterflow.aggregator_usage import Unreachable, UsageClient
from meterflow.db import connect
from meterflow.settings import Settings
from operations.events_replay import replay_events
from operations.terms import Filters, StoredInvoice, Terms, load_invoices, load_terms
from operations.usage import ScratchUsage, period_of


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One (subscription, charge, period): the topic's count against the recorded one."""

    external_subscription_id: str
    charge: str
    period_start: datetime
    period_end: datetime
    compared_with: str  # "invoice <number>", "live", "live unavailable" or "nothing yet"
    replay_units: Decimal
    replay_events: int
    recorded_units: Decimal | None
    recorded_events: int | None

    @property
    def differs(self) -> bool:
        if self.recorded_units is None:
            return False
        return (self.replay_units, self.replay_events) != (
            self.recorded_units,
            self.recorded_events or 0,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "external_subscription_id": self.external_subscription_id,
            "charge": self.charge,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "compared_with": self.compared_with,
            "replay": {"units": str(self.replay_units), "events_count": self.replay_events},
            "recorded": None
            if self.recorded_units is None
            else {"units": str(self.recorded_units), "events_count": self.recorded_events},
            "differs": self.differs,
        }


def _overlaps(start: datetime, end: datetime, since: datetime | None, until: datetime) -> bool:
    return start < until and (since is None or end > since)


async def _live_usages(
    usage: UsageClient, terms: list[Terms]
) -> dict[str, dict[str, tuple[Decimal, int]]]:
    """The units and events of each charge in the current period of each of `terms`, by
    subscription id, from the aggregator (those no worker answers for now left out)."""
    found: dict[str, dict[str, tuple[Decimal, int]]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for t in terms:
            try:
                answer = await usage.get(http, t.external_id, t.organization_id)
            except Unreachable:
                continue
            if answer.status != 200:
                continue
            charges = orjson.loads(answer.body)["customer_usage"]["charges_usage"]
            found[t.subscription_id] = {
                c["charge"]["lago_id"]: (Decimal(c["units"]), int(c["events_count"]))
                for c in charges
            }
    return found


def _recorded_by_invoice(invoice: StoredInvoice, charge_id: str) -> tuple[Decimal, int]:
    """What the invoice (with its adjustments for the same period) billed for the charge."""
    units, events = Decimal(0), 0
    for fee in invoice.fees:
        if fee.charge_id == charge_id and (fee.usage_period_start or fee.from_date) == (
            invoice.period_start
        ):
            units += fee.units
            events += fee.events_count or 0
    return units, events


async def compare(
    settings: Settings,
    filters: Filters,
    since: datetime | None,
    until: datetime | None,
    usage: UsageClient,
    *,
    progress: bool = True,
) -> tuple[list[ReplayRow], ScratchUsage]:
    """The replayed counts of every period of the selected subscriptions that overlaps
    [since, until), against the invoices or the live ledgers (a current period no worker
    answers for is compared with nothing: "live unavailable")."""
    now = datetime.now(UTC)
    until = until or now
    conn = await connect(settings.dsn, schema=settings.db_schema)
    try:
        terms = await load_terms(conn, filters)
        invoices = await load_invoices(conn, [t.subscription_id for t in terms])
    finally:
        await conn.close()
    scratch = await replay_events(settings, terms, progress=progress)
    by_period = {(i.subscription_id, i.period_start): i for i in invoices}
    periods: set[tuple[str, datetime]] = {(k[0], k[2]) for k in scratch.usage}
    periods.update(by_period)
    current = {t.subscription_id: period_of(t, now) for t in terms if t.covers(now)}
    periods.update((sub, p.start) for sub, p in current.items())
    terms_by_id = {t.subscription_id: t for t in terms}
    live_now = await _live_usages(
        usage,
        [
            terms_by_id[sub]
            for sub, p in current.items()
            if (sub, p.start) not in by_period and _overlaps(p.start, p.end, since, until)
        ],
    )
    rows: list[ReplayRow] = []
    for subscription_id, start in sorted(periods, key=lambda p: (p[1], p[0])):
        t = terms_by_id[subscription_id]
        invoice = by_period.get((subscription_id, start))
        period = period_of(t, start)
        end = invoice.period_end if invoice is not None else period.end
        if not _overlaps(start, end, since, until):
            continue
        current_period = subscription_id in current and current[subscription_id].start == start
        live = live_now.get(subscription_id) if current_period else None
        for charge in t.charges:
            found = scratch.usage.get((subscription_id, charge.charge_id, start))
            units = found.state.result() if found else Decimal(0)
            events = found.state.events_count if found else 0
            recorded: tuple[Decimal, int] | None = None
            source = "nothing yet"
            if invoice is not None:
                recorded = _recorded_by_invoice(invoice, charge.charge_id)
                source = f"invoice {invoice.number}"
            elif live is not None:
                recorded = live.get(charge.charge_id, (Decimal(0), 0))
                source = "live"
            elif current_period:
                source = "live unavailable"
            rows.append(
                ReplayRow(
                    t.external_id,
                    charge.metric_code,
                    start,
                    end,
                    source,
                    units,
                    events,
                    None if recorded is None else recorded[0],
                    None if recorded is None else recorded[1],
                )
            )
    return rows, scratch
