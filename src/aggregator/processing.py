"""Folding a batch of source messages into subscription ledgers, exactly once in effect.

A batch is applied synchronously (no await between reading a ledger and writing it
back), so the period closer, which runs on the same event loop, never sees a half-applied
batch. Every touched ledger is written once; the batch's new dedupe markers are written by
`remember`, once the ledgers are durable.

Replay rules (why redelivery never double counts; the full argument is in `aggregator.app`):

- an event whose position (`meterflow.event_records.position`: its record's offset and
  its index in the record) is at or below its ledger's `applied` position for that
  partition was already folded in (or dropped, held, dead-lettered) by a write that
  survived: skip;
- a dedupe marker names the (partition, position) of the event that set it; an event
  finding a marker set by another position is a duplicate, one finding its own marker is
  the same event delivered again, which the `applied` rule above then decides.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from aggregator.catalog_view import CatalogView, SubscriptionTerms
from aggregator.domain import Domain, UsageEvent
from aggregator.ledger import LATE, PERIODS, Ledger, ledger_key
from aggregator.markers import DedupeMarkers, NewMarker, expiry_day, marker_hash
from aggregator.store import PartitionedStore
from billing.errors import BillingError, InvalidEvent
from meterflow.event_records import (
    PACK_LIMIT,
    WireEvent,
    blank_field,
    decode_events,
    decode_record,
    encode_event,
    position,
    wire_instant,
)

log = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
# The catalog states `terminated_at` to the second, as Lago's API writes it: the events of
# the second it names (stamped before the DELETE, within that second) count in the final
# period rather than being refused as after the termination.
TERMINATION_RESOLUTION = timedelta(seconds=1)
PERIODS_CLOSED = "periods_closed"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One record of the events topic, with where it came from (a lone event or a pack,
    see `meterflow.event_records`)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    requeue_of: tuple[int, int] | None = None  # see meterflow.event_records.REQUEUE_HEADER


@dataclass(frozen=True, slots=True)
class Windows:
    """How long the aggregator waits: past a period's end (on the stream's watermark, for
    producers' clocks and requests in flight) before closing it, for an unknown subscription
    to appear, and for late events of a closed period."""

    skew: timedelta
    hold: timedelta
    late: timedelta


@dataclass(slots=True)
class DeadLetter:
    key: str | None
    value: dict[str, Any]


def dead_letter_value(
    source: dict[str, int | None],
    payload: bytes,
    reason: str,
    detail: str,
    field: str | None = None,
) -> dict[str, Any]:
    """The dead-letter record: why, where from (partition, offset and, for an event of a
    pack, its index), and the payload untouched (a pack's event re-encoded alone)."""
    try:
        text: str | None = payload.decode("utf-8")
        encoded = None
    except UnicodeDecodeError:
        text, encoded = None, base64.b64encode(payload).decode()
    return {
        "reason": reason,
        "field": field,
        "detail": detail,
        "source": source,
        "payload": text,
        "payload_base64": encoded,
        "dead_lettered_at": datetime.now(UTC).isoformat(),
    }


def held_dead_letter(item: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    """The dead-letter record of an event from a ledger's `held` list."""
    source = {"partition": item["p"], "offset": item["o"], "index": item.get("i")}
    return dead_letter_value(source, item["value"].encode(), reason, detail)


@dataclass(slots=True)
class SourceEvent:
    """One event of a record: the record, its index in it, the event as decoded, and when
    the broker received the record."""

    message: SourceMessage
    index: int
    raw: Any
    packed: bool
    received_at: datetime

    @property
    def position(self) -> int:
        return position(self.message.offset, self.index)

    def source(self) -> dict[str, int | None]:
        return {
            "partition": self.message.partition,
            "offset": self.message.offset,
            "index": self.index if self.packed else None,
        }

    def payload(self) -> bytes:
        if self.packed:
            if isinstance(self.raw, WireEvent):
                return encode_event(self.raw)
            return orjson.dumps(self.raw)
        return self.message.value or b""


class BatchResult:
    """What one batch did: ledgers and markers to write, dead letters to send, counts."""

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        # Ledger key -> when the period closer must visit it (Unix seconds): held events
        # expire, late usage is sent at once.
        self.visits: dict[str, float] = {}
        # (ledger key, transaction id hash) -> the marker this batch sets
        self.markers: dict[tuple[str, int], NewMarker] = {}
        self.dead_letters: list[DeadLetter] = []
        self.counts: Counter[str] = Counter()


class PeriodCache:
    """The last billing period found per subscription: most events of a batch fall in the
    same period, and finding one costs more than the rest of folding an event. Terms are
    rebuilt whenever the catalog changes, so a cached period never outlives its terms."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self._last: dict[str, tuple[SubscriptionTerms, datetime, datetime]] = {}

    def find(self, terms: SubscriptionTerms, instant: datetime) -> tuple[datetime, datetime]:
        cached = self._last.get(terms.subscription_id)
        if cached is not None and cached[0] is terms and cached[1] <= instant < cached[2]:
            return cached[1], cached[2]
        start, end = self.domain.period(terms, instant)
        self._last[terms.subscription_id] = (terms, start, end)
        return start, end


class EventProcessor:
    """Dedupes, holds, buckets and folds events into ledgers (pure: no I/O)."""

    def __init__(
        self,
        domain: Domain,
        catalog: CatalogView,
        ledgers: PartitionedStore,
        markers: DedupeMarkers,
        windows: Windows,
    ) -> None:
        self.domain = domain
        self.catalog = catalog
        self.ledgers = ledgers
        self.markers = markers
        self.windows = windows
        self.periods = PeriodCache(domain)

    def apply_batch(self, messages: list[SourceMessage], now: datetime) -> BatchResult:
        result = BatchResult()
        for message in messages:
            for event in self._events(message, result):
                try:
                    self._apply_event(event, now, result)
                except Exception as exc:  # one bad event must never stop the worker
                    log.exception(
                        "aggregator.event_failed partition=%d offset=%d index=%d",
                        message.partition,
                        message.offset,
                        event.index,
                    )
                    self._dead_letter(
                        result,
                        message.key,
                        event.source(),
                        event.payload(),
                        "internal_error",
                        repr(exc),
                    )
        for key, ledger in result.ledgers.items():
            if ledger.value["late"]:
                _visit(result, key, 0.0)  # late usage leaves at once, as its own message
            self.ledgers.put(ledger.partition, key, ledger.seal())
        return result

    def remember(self, result: BatchResult) -> None:
        """Write the batch's dedupe markers: only once its ledgers are durable (see
        `aggregator.markers`), before the next batch is applied."""
        self.markers.write(list(result.markers.values()))

    def _events(self, message: SourceMessage, result: BatchResult) -> list[SourceEvent]:
        """The record's events; a record that is not JSON at all is dead-lettered whole.

        Not tied to a ledger, such dead letters are sent again if the record is redelivered
        (at least once)."""
        source: dict[str, int | None] = {
            "partition": message.partition,
            "offset": message.offset,
            "index": None,
        }
        if message.value is None:
            self._dead_letter(result, message.key, source, b"", "invalid_event", "empty message")
            return []
        packed = message.value[:1] == b"["
        received_at = datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC)
        canonical = decode_events(message.value)  # the common case, validated in one pass
        if canonical is not None and 0 < len(canonical) <= PACK_LIMIT:
            return [
                SourceEvent(message, i, wire, packed, received_at)
                for i, wire in enumerate(canonical)
            ]
        try:
            items = decode_record(message.value)
        except orjson.JSONDecodeError as exc:
            self._dead_letter(
                result, message.key, source, message.value, "invalid_event", f"not JSON: {exc}"
            )
            return []
        if not items:
            self._dead_letter(
                result, message.key, source, message.value, "invalid_event", "an empty pack"
            )
            return []
        events = [SourceEvent(message, i, raw, packed, received_at) for i, raw in enumerate(items)]
        for extra in events[PACK_LIMIT:]:
            self._dead_letter(
                result,
                message.key,
                extra.source(),
                extra.payload(),
                "invalid_event",
                f"a pack holds at most {PACK_LIMIT} events",
            )
        return events[:PACK_LIMIT]

    def _ledger(self, result: BatchResult, key: str, partition: int) -> Ledger:
        ledger = result.ledgers.get(key)
        if ledger is None:
            ledger = Ledger(self.ledgers.get(key), partition)
            result.ledgers[key] = ledger
        return ledger

    def _dead_letter(
        self,
        result: BatchResult,
        key: bytes | None,
        source: dict[str, int | None],
        payload: bytes,
        reason: str,
        detail: str,
        field: str | None = None,
    ) -> None:
        result.dead_letters.append(
            DeadLetter(
                None if key is None else key.decode("utf-8", "replace"),
                dead_letter_value(source, payload, reason, detail, field),
            )
        )
        result.counts[f"dead_letter:{reason}"] += 1

    def _apply_event(self, source: SourceEvent, now: datetime, result: BatchResult) -> None:
        message = source.message
        try:
            event = self._decode(source.raw, source.received_at)
        except InvalidEvent as exc:
            # Not tied to a ledger: a redelivery dead-letters it again (at least once).
            self._dead_letter(
                result,
                message.key,
                source.source(),
                source.payload(),
                "invalid_event",
                exc.reason,
                exc.field,
            )
            return
        lkey = ledger_key(event.organization_id, event.external_subscription_id)
        ledger = self._ledger(result, lkey, message.partition)
        hashed = marker_hash(event.transaction_id)
        at = source.position
        seen = (lkey, hashed) in result.markers or self.markers.seen(lkey, hashed)
        if at <= ledger.applied(message.partition):
            result.counts["replayed"] += 1
            if not seen:
                # The ledger's record survived a crash that lost this event's marker: the
                # event was the first with its transaction id, so it set the marker.
                result.markers[(lkey, hashed)] = NewMarker(
                    lkey,
                    hashed,
                    message.partition,
                    at,
                    expiry_day(now + self.windows.hold + self.windows.late),
                )
            return
        ledger.mark_applied(message.partition, at)
        if message.requeue_of is not None:
            # A copy requeued from the dead-letter topic (meterflow.event_records.
            # REQUEUE_HEADER): the marker its dead-lettered original set yields to it, once.
            duplicate = not ledger.take_requeue(message.requeue_of)
        else:
            duplicate = seen
        if duplicate:
            result.counts["duplicate"] += 1
            return
        marker = NewMarker(lkey, hashed, message.partition, at, 0)
        result.markers[(lkey, hashed)] = marker
        terms = self.catalog.terms(event.organization_id, event.external_subscription_id)
        if terms is None:
            ledger.value["held"].append(
                {
                    "p": message.partition,
                    "o": message.offset,
                    "i": source.index if source.packed else None,
                    "ts": message.timestamp_ms,
                    "key": message.key.decode("utf-8", "replace") if message.key else None,
                    "value": source.payload().decode("utf-8"),
                }
            )
            marker.day = expiry_day(now + self.windows.hold + self.windows.late)
            result.counts["held"] += 1
            _visit(result, lkey, message.timestamp_ms / 1000 + self.windows.hold.total_seconds())
            return
        if ledger.value["held"]:
            self.release_held(ledger, terms, now, result.counts)
        outcome, expires = fold_event(
            self.domain, self.periods, ledger, terms, event, now, self.windows
        )
        marker.day = expiry_day(expires)
        if outcome.startswith("dead_letter:"):
            reason = outcome.split(":", 1)[1]
            ledger.enqueue(
                DEAD_LETTER,
                event.external_subscription_id,
                dead_letter_value(
                    source.source(),
                    source.payload(),
                    reason,
                    f"event {event.transaction_id}",
                ),
            )
        result.counts[outcome] += 1

    def _decode(self, item: Any, received_at: datetime) -> UsageEvent:
        if isinstance(item, WireEvent):
            try:
                instant = wire_instant(item.timestamp)
            except ValueError as exc:
                raise InvalidEvent(str(exc), "timestamp") from None
            if (
                item.transaction_id.isspace()
                or item.external_subscription_id.isspace()
                or item.code.isspace()
                or item.organization_id.isspace()
            ):
                blank = blank_field(item)
                raise InvalidEvent("must not be empty", blank)
            return UsageEvent(
                organization_id=item.organization_id,
                transaction_id=item.transaction_id,
                external_subscription_id=item.external_subscription_id,
                code=item.code,
                timestamp=instant,
                properties=item.properties,
            )
        if not isinstance(item, dict):
            raise InvalidEvent("not a JSON object", None)
        raw = dict(item)
        organization_id = raw.pop("organization_id", None)
        if not isinstance(organization_id, str) or not organization_id:
            raise InvalidEvent("missing or not a string", "organization_id")
        try:
            return self.domain.parse_event(organization_id, raw, received_at)
        except InvalidEvent:
            raise
        except BillingError as exc:
            raise InvalidEvent(str(exc), None) from None

    def release_held(
        self, ledger: Ledger, terms: SubscriptionTerms, now: datetime, counts: Counter[str]
    ) -> None:
        """Fold the events held while the subscription was unknown, in arrival order."""
        held = sorted(ledger.value["held"], key=lambda h: (h["p"], h["o"], h.get("i") or 0))
        ledger.value["held"] = []
        for item in held:
            received_at = datetime.fromtimestamp(item["ts"] / 1000, tz=UTC)
            event = self._decode(orjson.loads(item["value"]), received_at)
            outcome, _ = fold_event(
                self.domain, self.periods, ledger, terms, event, now, self.windows
            )
            if outcome.startswith("dead_letter:"):
                reason = outcome.split(":", 1)[1]
                ledger.enqueue(
                    DEAD_LETTER, item["key"] or "", held_dead_letter(item, reason, "held event")
                )
            counts[outcome] += 1
            counts["released"] += 1


@lru_cache(maxsize=4096)
def _later(instant: datetime, wait: timedelta) -> datetime:
    """instant + wait, cached: a batch adds the same few (its `now`, its periods' ends)."""
    return instant + wait


def _visit(result: BatchResult, key: str, due: float) -> None:
    held = result.visits.get(key)
    if held is None or due < held:
        result.visits[key] = due


def fold_event(
    domain: Domain,
    periods: PeriodCache,
    ledger: Ledger,
    terms: SubscriptionTerms,
    event: UsageEvent,
    now: datetime,
    windows: Windows,
) -> tuple[str, datetime]:
    """Fold one new event into its period (or the late bucket).

    Returns the outcome (`applied`, `late` or `dead_letter:<reason>`) and until when the
    event's dedupe marker must be kept.
    """
    keep_until = _later(now, windows.late)
    charges = terms.charges_for_metric(event.code)
    if not charges:
        return "dead_letter:no_charge_for_code", keep_until
    if event.timestamp < terms.subscription_at:
        return "dead_letter:before_subscription_start", keep_until
    if (
        terms.terminated_at is not None
        and event.timestamp >= terms.terminated_at + TERMINATION_RESOLUTION
    ):
        return "dead_letter:after_termination", keep_until
    try:
        start, end = periods.find(terms, event.timestamp)
    except BillingError as exc:
        log.warning("aggregator.period_failed subscription=%s error=%r", terms.subscription_id, exc)
        return "dead_letter:no_billing_period", keep_until
    closed_until = ledger.closed_until
    bucket = PERIODS
    if closed_until is not None and start < closed_until:
        if now - end > windows.late:
            return "dead_letter:too_late", keep_until
        bucket = LATE
    try:
        values = [domain.value_of(charge, event) for charge in charges]
    except InvalidEvent:
        return "dead_letter:invalid_property", keep_until
    for charge, value in zip(charges, values, strict=True):
        domain.add(ledger.state(domain, bucket, start, end, charge), value, event)
    if bucket == LATE:
        return "late", keep_until
    return "applied", max(keep_until, _later(end, windows.skew + windows.late))
