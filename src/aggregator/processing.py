"""Folding a batch of source messages into subscription ledgers, exactly once in effect.

A batch (or a slice of one: `apply_batch` stops when its time is up, and the app makes the
slice durable before it applies the rest, as it would a smaller batch) is applied
synchronously (no await between reading a ledger and writing it back), so the period closer,
which runs on the same event loop, never sees a half-applied one. Every touched ledger is
written once; the batch's new dedupe markers are written by `remember`, once the ledgers are
durable.

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
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from aggregator.catalog_view import CatalogView, SubscriptionTerms
from aggregator.domain import Domain, UsageEvent
from aggregator.fold import Fold, PeriodCache
from aggregator.ledger import Ledger, ledger_key
from aggregator.marker_index import Held, held_holds
from aggregator.markers import (
    DedupeMarkers,
    MarkerBatch,
    expiry_day,
    legacy_marker_hash,
    marker_hash,
)
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
    """One event of a record: the record, its index in it, the event as decoded."""

    message: SourceMessage
    index: int
    raw: Any
    packed: bool

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


@dataclass(slots=True)
class BatchSubscription:
    """One subscription as a batch found it (neither the catalog nor the marker index changes
    while a batch is applied): its ledger key and ledger, its terms (None while unknown), the
    transaction id hashes this batch sets markers for (`BatchResult.marks`), whether it holds
    markers of version 1 (looked up by that hash too) and its markers (`DedupeMarkers.held`)."""

    key: str
    ledger: Ledger
    terms: SubscriptionTerms | None
    fresh: set[int]
    legacy: bool
    held: Held | None


class BatchResult:
    """What one batch did: ledgers and markers to write, dead letters to send, counts."""

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        # organization id -> external subscription id -> what the batch found of it (two
        # lookups by the event's own strings: no key tuple built per event)
        self.subscriptions: dict[str, dict[str, BatchSubscription]] = {}
        # Ledger key -> when the period closer must visit it (Unix seconds): held events
        # expire, late usage is sent at once.
        self.visits: dict[str, float] = {}
        self.dead_letters: list[DeadLetter] = []
        self.marks = MarkerBatch()  # the markers this batch sets
        self.counts: Counter[str] = Counter()
        self.taken = 0  # messages applied: the first `taken` of those given to apply_batch
        # The folded events' outcomes (applied, late, dead_letter:<reason>), into `counts`
        # when the batch ends.
        self.outcomes: dict[str, int] = {}


@dataclass(eq=False)
class EventProcessor:
    """Dedupes, holds, buckets and folds events into ledgers (pure: no I/O)."""

    domain: Domain
    catalog: CatalogView
    ledgers: PartitionedStore
    markers: DedupeMarkers
    windows: Windows
    periods: PeriodCache = field(init=False)

    def __post_init__(self) -> None:
        self.periods = PeriodCache(self.domain)

    def apply_batch(
        self, messages: list[SourceMessage], now: datetime, seconds: float = math.inf
    ) -> BatchResult:
        """Apply messages in order until they are done or `seconds` have passed (whole
        records, at least one); `result.taken` says how many. The caller makes them durable
        before applying the rest (`aggregator.app`)."""
        result = BatchResult()
        result.marks.checked = self.markers.generation  # unless a requeued copy says otherwise
        fold = Fold(self.domain, self.periods, self.windows, now)
        deadline = time.perf_counter() + seconds
        for message in messages:
            if result.taken and time.perf_counter() >= deadline:
                break
            result.taken += 1
            items = self._events(message, result)
            if not items:
                continue
            self._apply_record(message, items, result, fold)
        fold.apply()
        result.counts.update(result.outcomes)
        for key, ledger in result.ledgers.items():
            if ledger.value["late"]:
                _visit(result, key, 0.0)  # late usage leaves at once, as its own message
            self.ledgers.put(ledger.partition, key, ledger.seal())
        return result

    def remember(self, result: BatchResult) -> None:
        """Write the batch's dedupe markers: only once its ledgers are durable (see
        `aggregator.markers`), before the next batch is applied."""
        self.markers.write_batch(result.marks)

    def _events(self, message: SourceMessage, result: BatchResult) -> list[Any]:
        """The record's events (`WireEvent`s in the common case, else as JSON decoded); a
        record that is not JSON at all is dead-lettered whole.

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
        canonical = decode_events(message.value)  # the common case, validated in one pass
        if canonical is not None and 0 < len(canonical) <= PACK_LIMIT:
            return canonical
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
        for index in range(PACK_LIMIT, len(items)):
            self._dead_letter_event(
                result,
                SourceEvent(message, index, items[index], True),
                "invalid_event",
                f"a pack holds at most {PACK_LIMIT} events",
            )
        return items[:PACK_LIMIT]

    def _subscription(
        self, result: BatchResult, event: UsageEvent, partition: int
    ) -> BatchSubscription:
        """Its ledger (read on its first event's partition) and terms, once per batch."""
        ident = (event.organization_id, event.external_subscription_id)
        key = ledger_key(*ident)
        ledger = result.ledgers.get(key)
        if ledger is None:
            ledger = result.ledgers[key] = Ledger(self.ledgers.get(key, partition), partition)
        terms, markers = self.catalog.terms(*ident), self.markers
        found = BatchSubscription(key, ledger, terms, set(), markers.legacy(key), markers.held(key))
        result.subscriptions.setdefault(event.organization_id, {})[ident[1]] = found
        return found

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

    def _dead_letter_event(
        self,
        result: BatchResult,
        source: SourceEvent,
        reason: str,
        detail: str,
        field: str | None = None,
    ) -> None:
        """One event of a record dead-lettered, under its record's key."""
        self._dead_letter(
            result, source.message.key, source.source(), source.payload(), reason, detail, field
        )

    def _apply_record(
        self, message: SourceMessage, items: list[Any], result: BatchResult, fold: Fold
    ) -> None:
        """A record's events, each dropped as replayed or duplicate, held, dead-lettered, or
        folded (its place decided now, its values added by `fold.apply`). One loop for the
        record, with what every event reads taken once: the hot path of the worker."""
        packed = message.value is not None and message.value[:1] == b"["
        partition, offset, requeue_of = message.partition, message.offset, message.requeue_of
        subscriptions, marks, outcomes = result.subscriptions, result.marks, result.outcomes
        # (methods called on the objects, not bound to locals first: compiled, such a
        # call is a direct C call, a bound one goes through Python's)
        markers = self.markers
        first = position(offset, 0)  # (an event's position: first + its index)
        for index, raw in enumerate(items):
            try:
                try:
                    event = self._decode(raw, message.timestamp_ms)
                except InvalidEvent as exc:
                    # Not tied to a ledger: a redelivery dead-letters it again (at least once).
                    self._dead_letter_event(
                        result,
                        SourceEvent(message, index, raw, packed),
                        "invalid_event",
                        exc.reason,
                        exc.field,
                    )
                    continue
                organization = subscriptions.get(event.organization_id)
                sub = (
                    None
                    if organization is None
                    else organization.get(event.external_subscription_id)
                )
                if sub is None:
                    sub = self._subscription(result, event, partition)
                ledger, lkey = sub.ledger, sub.key
                hashed = marker_hash(event.transaction_id)
                at = first + index
                seen = hashed in sub.fresh or held_holds(sub.held, hashed)
                if not seen and sub.legacy:  # counted before version 2, by its BLAKE2b hash
                    seen = markers.seen(lkey, legacy_marker_hash(event.transaction_id))
                applied = ledger.applied_at  # (Ledger.applied, inline: the hot path)
                if at <= applied.get(partition, -1):
                    result.counts["replayed"] += 1
                    if not seen:
                        # The ledger's record survived a crash that lost this event's marker:
                        # the event was the first with its transaction id, so it set the marker.
                        sub.fresh.add(hashed)
                        marks.add(lkey, hashed, partition, at, self._held_day(fold))
                    continue
                applied[partition] = at  # (Ledger.mark_applied: `at` is above it)
                if requeue_of is not None:
                    # A copy requeued from the dead-letter topic (event_records.REQUEUE_HEADER):
                    # the marker its dead-lettered original set yields to it, once.
                    seen = not ledger.take_requeue(requeue_of)
                    marks.checked = None  # its hash may be held: the original's marker
                if seen:
                    result.counts["duplicate"] += 1
                    continue
                sub.fresh.add(hashed)
                terms = sub.terms
                if terms is not None:
                    if ledger.value["held"]:
                        self.release_held(ledger, terms, fold.now, result.counts)
                    try:
                        outcome, day = fold.event(ledger, terms, event)
                    except Exception:  # dead-lettered below: its marker kept as a dead letter's
                        marks.add(lkey, hashed, partition, at, fold.keep_day)
                        raise
                elif self.catalog.keeps(event.external_subscription_id):
                    self._hold(SourceEvent(message, index, raw, packed), sub, result)
                    marks.add(lkey, hashed, partition, at, self._held_day(fold))
                    continue
                else:  # its subscription's partition is another worker's (`CatalogView`)
                    outcome, day = "dead_letter:wrong_partition", fold.keep_day
                marks.add(lkey, hashed, partition, at, day)
                if outcome[0] == "d":  # dead_letter:<reason>
                    source = SourceEvent(message, index, raw, packed)
                    ledger.enqueue(
                        DEAD_LETTER,
                        event.external_subscription_id,
                        dead_letter_value(
                            source.source(),
                            source.payload(),
                            outcome.split(":", 1)[1],
                            f"event {event.transaction_id}",
                        ),
                    )
                # (a plain dict: a Counter's += costs 2.5 times as much)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            except Exception as exc:  # one bad event must never stop the worker
                log.exception(
                    "aggregator.event_failed partition=%d offset=%d index=%d",
                    partition,
                    offset,
                    index,
                )
                self._dead_letter_event(
                    result, SourceEvent(message, index, raw, packed), "internal_error", repr(exc)
                )

    def _held_day(self, fold: Fold) -> int:
        """The expiry day of the marker of an event held (or replayed): kept as long as it
        may wait for its subscription, then the late window."""
        return expiry_day(fold.now + self.windows.hold + self.windows.late)

    def _hold(self, source: SourceEvent, sub: BatchSubscription, result: BatchResult) -> None:
        """Keep an event of a subscription not known yet in its ledger until it is."""
        message = source.message
        sub.ledger.value["held"].append(
            {
                "p": message.partition,
                "o": message.offset,
                "i": source.index if source.packed else None,
                "ts": message.timestamp_ms,
                "key": message.key.decode("utf-8", "replace") if message.key else None,
                "value": source.payload().decode("utf-8"),
            }
        )
        result.counts["held"] += 1
        _visit(result, sub.key, message.timestamp_ms / 1000 + self.windows.hold.total_seconds())

    def _decode(self, item: Any, received_ms: int) -> UsageEvent:
        """The event, validated; `received_ms`: when the broker received its record (the
        instant of an event that names none)."""
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
            return UsageEvent(  # (by position: cheaper than keywords, for every event)
                item.organization_id,
                item.transaction_id,
                item.external_subscription_id,
                item.code,
                instant,
                item.properties,
            )
        if not isinstance(item, dict):
            raise InvalidEvent("not a JSON object", None)
        raw = dict(item)
        organization_id = raw.pop("organization_id", None)
        if not isinstance(organization_id, str) or not organization_id:
            raise InvalidEvent("missing or not a string", "organization_id")
        try:
            received_at = datetime.fromtimestamp(received_ms / 1000, tz=UTC)
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
        fold = Fold(self.domain, self.periods, self.windows, now)
        for item in held:
            event = self._decode(orjson.loads(item["value"]), item["ts"])
            outcome, _ = fold.event(ledger, terms, event)
            if outcome.startswith("dead_letter:"):
                reason = outcome.split(":", 1)[1]
                ledger.enqueue(
                    DEAD_LETTER, item["key"] or "", held_dead_letter(item, reason, "held event")
                )
            counts[outcome] += 1
            counts["released"] += 1
        fold.apply()  # before anything reads the states (the closer, the batch's next events)


def _visit(result: BatchResult, key: str, due: float) -> None:
    held = result.visits.get(key)
    if held is None or due < held:
        result.visits[key] = due
