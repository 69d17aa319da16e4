"""Field validation of request bodies: every problem gathered, in Lago's error_details."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from web.errors import ValidationFailed
from web.payload import Fields, is_timezone, pagination_meta, parse_instant


def test_fields_gather_every_problem_at_once() -> None:
    fields = Fields(
        {"name": 3, "count": "x", "flag": 1, "extra": True, "tz": "Mars/Olympus"},
        {"name", "count", "flag", "tz", "code"},
    )
    assert fields.text("name") is None
    assert fields.integer("count") is None
    assert fields.flag("flag") is None
    assert fields.timezone("tz") is None
    assert fields.text("code", required=True) is None
    with pytest.raises(ValidationFailed) as caught:
        fields.check()
    assert caught.value.status == 422
    assert caught.value.body() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {
            "extra": ["unknown_field"],
            "name": ["value_is_invalid"],
            "count": ["value_is_invalid"],
            "flag": ["value_is_invalid"],
            "tz": ["invalid_timezone"],
            "code": ["value_is_mandatory"],
        },
    }


def test_booleans_are_not_integers_and_choices_are_enforced() -> None:
    fields = Fields({"n": True, "kind": "weird"}, {"n", "kind"})
    assert fields.integer("n") is None
    assert fields.text("kind", choices=("a", "b")) is None
    assert set(fields.errors) == {"n", "kind"}


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("UTC", True),
        ("Europe/Paris", True),
        ("Asia/Kolkata", True),
        ("Pacific/Chatham", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Mars/Olympus", False),
        ("", False),
        ("/etc/passwd", False),
        ("../../etc/localtime", False),
        ("Europe/../UTC", False),
        ("CEST", False),
        ("+05:30", False),
    ],
)
def test_timezones_are_iana_names(name: str, valid: bool) -> None:
    assert is_timezone(name) is valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("yesterday", None),
    ],
)
def test_instants(raw: str, expected: datetime | None) -> None:
    assert parse_instant(raw) == expected


@pytest.mark.parametrize(
    ("page", "per_page", "total", "meta"),
    [
        (1, 20, 0, (1, None, None, 1, 0)),
        (1, 2, 5, (1, 2, None, 3, 5)),
        (2, 2, 5, (2, 3, 1, 3, 5)),
        (3, 2, 5, (3, None, 2, 3, 5)),
        (1, 5, 5, (1, None, None, 1, 5)),
    ],
)
def test_pagination_meta(
    page: int, per_page: int, total: int, meta: tuple[int, int | None, int | None, int, int]
) -> None:
    assert pagination_meta(page, per_page, total) == dict(
        zip(
            ("current_page", "next_page", "prev_page", "total_pages", "total_count"),
            meta,
            strict=True,
        )
    )
