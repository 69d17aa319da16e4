"""Which thresholds a value crossed going up, and what an alert watches in a current-usage
body (`billing.alert_thresholds`)."""

from __future__ import annotations

from decimal import Decimal

from billing.alert_thresholds import MAX_REPEATS, Threshold, crossed, watched_value

D = Decimal
WARN, STOP = Threshold("warn", D(500)), Threshold("stop", D(1000))
EVERY = Threshold("every", D(250), recurring=True)


def values(hits: list[Threshold]) -> list[tuple[str | None, Decimal, bool]]:
    return [(t.code, t.value, t.recurring) for t in hits]


def test_a_threshold_is_crossed_once_going_up() -> None:
    assert crossed([WARN, STOP], D(0), D(499)) == []
    assert crossed([WARN, STOP], D(0), D(500)) == [WARN], "reaching the value crosses it"
    assert crossed([WARN, STOP], D(500), D(999)) == [], "already past"
    assert crossed([STOP, WARN], D(100), D(2000)) == [WARN, STOP], "ascending, both at once"


def test_going_down_crosses_nothing_and_going_up_again_does() -> None:
    assert crossed([WARN], D(700), D(0)) == [], "a new period starts from zero"
    assert crossed([WARN], D(0), D(600)) == [WARN]


def test_the_recurring_threshold_repeats_above_the_highest_other() -> None:
    assert values(crossed([WARN, STOP, EVERY], D(900), D(1600))) == [
        ("stop", D(1000), False),
        ("every", D(1250), True),
        ("every", D(1500), True),
    ]
    assert values(crossed([WARN, STOP, EVERY], D(1250), D(1499))) == []
    assert values(crossed([WARN, STOP, EVERY], D(1250), D(1500))) == [("every", D(1500), True)]
    assert values(crossed([EVERY], D(0), D(600))) == [
        ("every", D(250), True),
        ("every", D(500), True),
    ], "alone, it repeats from zero"


def test_a_huge_jump_lists_a_bounded_number_of_repeats() -> None:
    hits = crossed([Threshold(None, D(1), recurring=True)], D(0), D(10**9))
    assert len(hits) == MAX_REPEATS and hits[-1].value == MAX_REPEATS


def test_the_watched_value_in_a_current_usage_body() -> None:
    def line(code: str, units: str, cents: int) -> dict[str, object]:
        return {"billable_metric": {"code": code}, "units": units, "amount_cents": cents}

    usage = {
        "amount_cents": 1234,
        "charges_usage": [line("calls", "10.5", 200), line("gb", "3", 900), line("calls", "2", 50)],
    }
    assert watched_value("current_usage_amount", None, usage) == D(1234)
    assert watched_value("billable_metric_current_usage_amount", "calls", usage) == D(250)
    assert watched_value("billable_metric_current_usage_units", "calls", usage) == D("12.5")
    assert watched_value("billable_metric_current_usage_units", "other", usage) == D(0)
    assert watched_value("lifetime_usage_amount", None, usage, D(10_000)) == D(11_234)
