"""The msgspec records of dedupe markers (`aggregator.markers`): the changelog's segment and
a marker given alone. Apart from `markers` because that module is compiled with mypyc
(`aggregator.compiled`), and a msgspec Struct defined in a compiled module loses its class
options (`array_like`) and field types."""

from __future__ import annotations

import msgspec


class Segment(msgspec.Struct, array_like=True, gc=False):
    """A changelog record of markers; `version` 1 when the record has none (written before
    version 2)."""

    partition: int
    day: int
    entries: list[tuple[str, bytes]]
    version: int = 1


class NewMarker(msgspec.Struct, gc=False):
    """A marker given alone to `DedupeMarkers.write` (a batch's come as a `MarkerBatch`)."""

    ledger_key: str
    hash: int
    partition: int
    position: int
    day: int  # expiry_day
