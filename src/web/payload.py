"""Reading request bodies: JSON parsing, Lago's root wrappers, and typed field access that
collects every problem into Lago's ``error_details`` instead of stopping at the first."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeGuard, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web

from billing.money import SUPPORTED_CURRENCIES
from web.errors import BadRequest, ErrorDetails, NotFound, ValidationFailed

MANDATORY = "value_is_mandatory"
INVALID = "value_is_invalid"
UNKNOWN = "unknown_field"


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest({"body": ["invalid_json"]}) from None


async def read_wrapped(request: web.Request, root: str) -> dict[str, Any]:
    """The object inside Lago's wrapper, e.g. ``{"customer": {...}}``."""
    body = await read_json(request)
    if not isinstance(body, dict) or root not in body:
        raise BadRequest({root: [MANDATORY]})
    unknown = sorted(k for k in body if k != root)
    if unknown:
        raise ValidationFailed({k: [UNKNOWN] for k in unknown})
    inner = body[root]
    if not isinstance(inner, dict):
        raise BadRequest({root: [INVALID]})
    return inner


def query_date(request: web.Request, name: str, errors: dict[str, list[str]]) -> date | None:
    """The query's `name` as a day (`YYYY-MM-DD`); None when absent, or when it is no day
    (then `invalid_date` joins `errors`)."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = ["invalid_date"]
        return None


def is_timezone(name: str) -> bool:
    """An IANA zone name that zoneinfo knows (not a file path, not an abbreviation)."""
    if not name or name.startswith(("/", ".")) or ".." in name or "\x00" in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def is_text(value: Any, max_length: int = 255) -> TypeGuard[str]:
    """A string Postgres can store in a text column (no NUL) within `max_length`."""
    return isinstance(value, str) and len(value) <= max_length and "\x00" not in value


def parse_instant(value: str) -> datetime | None:
    """An ISO 8601 instant; a naive one is taken as UTC. None when it does not parse."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_T = TypeVar("_T")


def _of(kind: type[_T]) -> Callable[[Any], _T | None]:
    """A `Fields._read` parse: the value itself when it is a `kind`."""
    return lambda value: value if isinstance(value, kind) else None


def _is_number(value: Any, kinds: Any) -> bool:
    """One of `kinds` (int, float, str), JSON's true and false excepted (bool is an int)."""
    return isinstance(value, kinds) and not isinstance(value, bool)


class Fields:
    """Typed, validated access to one input object; problems gather in `errors`.

    Every getter returns None when the field is absent (or invalid), so a handler reads all
    fields, then calls `check()` once, which raises `ValidationFailed` with every problem.
    """

    def __init__(self, raw: dict[str, Any], allowed: Collection[str], *, prefix: str = ""):
        self.raw = raw
        self.prefix = prefix
        self.errors: ErrorDetails = {}
        for key in raw:
            if key not in allowed:
                self.add(key, UNKNOWN)

    def add(self, name: str, code: str) -> None:
        self.errors.setdefault(self.prefix + name, []).append(code)

    def merge(self, errors: ErrorDetails) -> None:
        for key, codes in errors.items():
            existing = self.errors.setdefault(key, [])
            existing.extend(codes if isinstance(codes, list) else [codes])

    def has(self, name: str) -> bool:
        return name in self.raw

    def each(
        self, name: str, raw: list[Any], allowed: Collection[str]
    ) -> Iterator[tuple[int, dict[str, Any], Fields]]:
        """Each object of the array `name` (its items `raw`), with its index and a Fields of
        its own whose problems (named `name.i.field`) join these once the caller has read
        it; an item that is no object is refused as invalid."""
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.add(f"{name}.{i}", INVALID)
                continue
            entry = Fields(item, allowed, prefix=f"{self.prefix}{name}.{i}.")
            yield i, item, entry
            self.merge(entry.errors)

    def _get(self, name: str, required: bool) -> Any:
        value = self.raw.get(name)
        if value is None and required:
            self.add(name, MANDATORY)
        return value

    def _read(self, name: str, required: bool, parse: Callable[[Any], _T | None]) -> _T | None:
        """The field as `parse` reads it; None when it is absent, or when `parse` finds no
        valid value in it (refused as invalid)."""
        value = self._get(name, required)
        parsed = None if value is None else parse(value)
        if parsed is None and value is not None:
            self.add(name, INVALID)
        return parsed

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int = 255,
        choices: Collection[str] | None = None,
    ) -> str | None:
        value = self._read(name, required, lambda v: v if is_text(v, max_length) else None)
        if value is None:
            return None
        if required and not value.strip():
            self.add(name, MANDATORY)
            return None
        if choices is not None and value not in choices:
            self.add(name, INVALID)
            return None
        return value

    def integer(
        self, name: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        def parse(value: Any) -> int | None:
            if not _is_number(value, int) or abs(value) >= 2**63:
                return None
            return value if minimum is None or value >= minimum else None

        return self._read(name, required, parse)

    def number(self, name: str, *, minimum: float | None = None) -> float | int | None:
        def parse(value: Any) -> float | int | None:
            if not _is_number(value, int | float):
                return None
            return value if minimum is None or value >= minimum else None

        return self._read(name, False, parse)

    def decimal(
        self,
        name: str,
        *,
        low: Decimal,
        high: Decimal,
        low_open: bool = False,
        required: bool = False,
    ) -> Decimal | None:
        """A finite decimal in [low, high] (or (low, high] with `low_open`), sent as a string
        (as Lago's spec has amounts and rates) or as a JSON number (as its clients send)."""

        def parse(raw: Any) -> Decimal | None:
            if not _is_number(raw, str | int | float):
                return None
            try:
                value = Decimal(str(raw).strip())
            except InvalidOperation:
                return None
            if not value.is_finite() or value < low or (low_open and value == low):
                return None
            return value if value <= high else None

        return self._read(name, required, parse)

    def flag(self, name: str, *, required: bool = False) -> bool | None:
        return self._read(name, required, _of(bool))

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        return self._read(name, required, _of(dict))

    def array(self, name: str, *, required: bool = False) -> list[Any] | None:
        return self._read(name, required, _of(list))

    def strings(self, name: str) -> list[str] | None:
        return self._read(
            name, False, lambda v: v if isinstance(v, list) and all(map(is_text, v)) else None
        )

    def timezone(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not is_timezone(value):
            self.add(name, "invalid_timezone")
            return None
        return value

    def instant(self, name: str) -> datetime | None:
        value = self.text(name, max_length=64)
        if value is None:
            return None
        parsed = parse_instant(value)
        if parsed is None:
            self.add(name, "invalid_date")
        return parsed

    def check(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def currency(fields: Fields, name: str, *, required: bool = False) -> str | None:
    """An ISO 4217 code meterflow bills in (`billing.money.SUPPORTED_CURRENCIES`)."""
    value = fields.text(name, required=required, max_length=3)
    if value is not None and value not in SUPPORTED_CURRENCIES:
        fields.add(name, INVALID)
        return None
    return value


def page_params(request: web.Request, *, default: int = 20, maximum: int = 100) -> tuple[int, int]:
    """`page` (from 1) and `per_page` of a list request."""
    page = _positive(request.query.get("page"), 1)
    per_page = _positive(request.query.get("per_page"), default)
    errors: ErrorDetails = {}
    if page is None:
        errors["page"] = [INVALID]
    if per_page is None:
        errors["per_page"] = [INVALID]
    if page is None or per_page is None:
        raise ValidationFailed(errors)
    return page, min(per_page, maximum)


def _positive(raw: str | None, default: int) -> int | None:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        return None
    return int(raw)


def pagination_meta(page: int, per_page: int, total: int) -> dict[str, Any]:
    total_pages = max(1, -(-total // per_page))
    return {
        "current_page": page,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total,
    }


def iso(instant: datetime | None) -> str | None:
    """Lago's timestamp format: UTC, seconds, trailing Z."""
    if instant is None:
        return None
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Row(Protocol):
    """A database row or a dict: columns by name."""

    def __getitem__(self, column: str, /) -> Any: ...


def isos(row: Row, *columns: str) -> dict[str, str | None]:
    """The row's timestamp columns under their own names, each in Lago's format (`iso`)."""
    return {column: iso(row[column]) for column in columns}


def ok(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def object_id(raw: str | None, kind: str) -> uuid.UUID:
    """The id a path or input names, or `{kind}_not_found` when it is no id at all (no
    object can have it)."""
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        raise NotFound(kind) from None
