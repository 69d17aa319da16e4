"""Dates in the customer's timezone with the organization's and UTC beside them, the zone
list of the timezone field, and the API's error codes said beside the form's fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from console.customer_form import BLANK_METADATA_ROWS, from_body, metadata_rows, to_input
from console.dates import Dates, offset_text, timezone_choices
from console.messages import field_errors

INSTANT = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Europe's spring change is at 01:00 UTC


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (0, "UTC+00:00"),
        (330, "UTC+05:30"),
        (345, "UTC+05:45"),
        (765, "UTC+12:45"),
        (-660, "UTC-11:00"),
        (-570, "UTC-09:30"),
        (840, "UTC+14:00"),
    ],
)
def test_offsets_are_signed_hours_and_minutes(minutes: int, text: str) -> None:
    assert offset_text(timedelta(minutes=minutes)) == text


@pytest.mark.parametrize(
    ("zone", "shown", "offset"),
    [
        ("Asia/Kathmandu", "2026-03-29 06:15", "UTC+05:45"),
        ("Pacific/Chatham", "2026-03-29 14:15", "UTC+13:45"),
        ("Pacific/Pago_Pago", "2026-03-28 13:30", "UTC-11:00"),
        ("Europe/Paris", "2026-03-29 01:30", "UTC+01:00"),
    ],
)
def test_a_date_shows_the_customer_zone_then_three_on_hover(
    zone: str, shown: str, offset: str
) -> None:
    html = str(Dates("America/St_Johns").show("2026-03-29T00:30:00Z", zone))
    assert re.match(
        rf'<time class="when" datetime="2026-03-29T00:30:00Z" tabindex="0">{shown}<', html
    )
    rows = re.findall(r'tz-label">(\w+)</span> <span class="tz-zone">([^<]+)</span>', html)
    assert rows == [
        ("Customer", f"{zone} {offset}"),
        ("Organization", "America/St_Johns UTC-02:30"),
        ("UTC", "UTC UTC+00:00"),
    ]


def test_the_same_zone_changes_offset_across_daylight_saving() -> None:
    before = str(Dates("UTC").show(INSTANT, "Europe/Paris"))
    after = str(Dates("UTC").show(INSTANT + timedelta(hours=1), "Europe/Paris"))
    assert "Europe/Paris UTC+01:00" in before and "Europe/Paris UTC+02:00" in after


def test_no_instant_and_no_customer_zone() -> None:
    assert "-" in str(Dates("UTC").show(None))
    assert 'Organization</span> <span class="tz-zone">Asia/Tokyo' in str(
        Dates("Asia/Tokyo").show(INSTANT)
    )


def test_every_iana_zone_is_offered_with_its_offset() -> None:
    choices = dict(timezone_choices())
    assert len(choices) > 400
    assert re.fullmatch(r"Asia/Kolkata, UTC\+05:30", choices["Asia/Kolkata"])
    assert "Etc/GMT+12" in choices and "UTC" in choices


def test_a_blank_field_clears_and_metadata_rows_need_a_key_or_value() -> None:
    raw = to_input(
        {
            "external_id": " c-1 ",
            "name": "",
            "timezone": "Asia/Kolkata",
            "metadata.0.key": "k",
            "metadata.0.value": "v",
            "metadata.0.display_in_invoice": "on",
            "metadata.2.value": "x",
        }
    )
    assert raw["external_id"] == "c-1" and raw["name"] is None
    assert raw["metadata"] == [
        {"key": "k", "value": "v", "display_in_invoice": True},
        {"key": None, "value": "x", "display_in_invoice": False},
    ]
    assert raw["billing_configuration"] == {"payment_provider": None}


def test_a_customer_body_fills_the_form() -> None:
    body = {
        "external_id": "c-1",
        "name": "N",
        "timezone": None,
        "billing_configuration": {"payment_provider": "stripe"},
        "metadata": [{"key": "k", "value": "v", "display_in_invoice": True}],
    }
    values = from_body(body)
    assert values["timezone"] == "" and values["billing_configuration.payment_provider"] == "stripe"
    assert values["metadata.0.display_in_invoice"] is True


def test_an_edit_keeps_every_metadata_row_however_many() -> None:
    items = [{"key": f"k{i}", "value": f"v{i}", "display_in_invoice": i % 2 == 0} for i in range(7)]
    body = {"external_id": "c-1", "billing_configuration": {}, "metadata": items}
    values = from_body(body)
    assert metadata_rows(values) == 7 + BLANK_METADATA_ROWS
    # What the browser posts back: every row shown, checkboxes as "on" when ticked.
    posted = {k: ("on" if v is True else v) for k, v in values.items() if v is not False}
    posted["metadata.8.key"] = "added"
    assert to_input(posted)["metadata"] == [
        *items,
        {"key": "added", "value": None, "display_in_invoice": False},
    ]


def test_error_codes_are_said_beside_their_field_and_others_above_the_form() -> None:
    errors = field_errors(
        {
            "external_id": ["external_id_locked"],
            "timezone": ["invalid_timezone"],
            "plan_overrides": ["not_supported"],
        },
        ["external_id", "timezone"],
    )
    assert errors["external_id"][0].startswith("Locked:")
    assert errors["timezone"] == [
        "Not an IANA timezone: pick one from the list (e.g. Europe/Paris)."
    ]
    assert errors[""] == ["plan_overrides: Not supported by meterflow yet."]
