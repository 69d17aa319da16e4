"""A small complete catalog (organization, customer, metric, plan with charges,
subscription) as catalog-topic records: for benchmarks, tests and trying the aggregator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meterflow.catalog import CatalogKind, CatalogRecord


@dataclass
class SampleCatalog:
    """Builds catalog records for one organization; each `add_*` returns the record."""

    organization_id: str
    organization_timezone: str | None = None
    records: list[CatalogRecord] = field(default_factory=list)
    # The last version written per object (a version is one more than the object's last).
    versions: dict[tuple[CatalogKind, str], int] = field(default_factory=dict)

    def _record(
        self, kind: CatalogKind, lago_id: str, body: dict[str, Any] | None
    ) -> CatalogRecord:
        version = self.versions[kind, lago_id] = self.versions.get((kind, lago_id), 0) + 1
        record = CatalogRecord(kind, lago_id, self.organization_id, version, body)
        self.records.append(record)
        return record

    def organization(self) -> CatalogRecord:
        return self._record(
            CatalogKind.ORGANIZATION,
            self.organization_id,
            {"lago_id": self.organization_id, "timezone": self.organization_timezone},
        )

    def customer(self, external_id: str, timezone: str | None = None) -> CatalogRecord:
        return self._record(
            CatalogKind.CUSTOMER,
            f"cus-{self.organization_id}-{external_id}",
            {
                "lago_id": f"cus-{self.organization_id}-{external_id}",
                "external_id": external_id,
                "timezone": timezone,
            },
        )

    def metric(
        self, code: str, aggregation_type: str = "count_agg", field_name: str | None = None
    ) -> CatalogRecord:
        return self._record(
            CatalogKind.BILLABLE_METRIC,
            f"bm-{self.organization_id}-{code}",
            {
                "lago_id": f"bm-{self.organization_id}-{code}",
                "name": code,
                "code": code,
                "aggregation_type": aggregation_type,
                "field_name": field_name,
                "filters": [],
            },
        )

    def plan(
        self,
        code: str,
        metric_codes: list[str],
        *,
        interval: str = "monthly",
        unit_amount: str = "0.01",
        currency: str = "USD",
    ) -> CatalogRecord:
        charges = [
            {
                "lago_id": f"ch-{self.organization_id}-{code}-{metric_code}",
                "billable_metric_id": f"bm-{self.organization_id}-{metric_code}",
                "billable_metric_code": metric_code,
                "charge_model": "standard",
                "invoice_display_name": None,
                "properties": {"amount": unit_amount},
            }
            for metric_code in metric_codes
        ]
        return self._record(
            CatalogKind.PLAN,
            f"plan-{self.organization_id}-{code}",
            {
                "lago_id": f"plan-{self.organization_id}-{code}",
                "code": code,
                "interval": interval,
                "amount_cents": 0,
                "amount_currency": currency,
                "pay_in_advance": False,
                "charges": charges,
            },
        )

    def subscription(
        self,
        external_id: str,
        *,
        customer: str,
        plan_code: str,
        subscription_at: str,
        billing_time: str = "calendar",
        terminated_at: str | None = None,
    ) -> CatalogRecord:
        lago_id = f"sub-{self.organization_id}-{external_id}"
        return self._record(
            CatalogKind.SUBSCRIPTION,
            lago_id,
            {
                "lago_id": lago_id,
                "external_id": external_id,
                "external_customer_id": customer,
                "plan_code": plan_code,
                "billing_time": billing_time,
                "subscription_at": subscription_at,
                "started_at": subscription_at,
                "status": "terminated" if terminated_at else "active",
                "terminated_at": terminated_at,
            },
        )
