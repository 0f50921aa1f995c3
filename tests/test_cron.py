"""Cron expressions of periodic schedules (gridd/cron.py): fields, names, the Vixie day rule, aliases, time
zones and DST, the catch-up of missed slots, and the one-line errors of what cannot be used."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gridd.cron import MAX_CATCH_UP, ON_TIME_MS, CronError, local_time, parse


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def at(slot: int | None, tz: str = "UTC") -> str:
    assert slot is not None
    return datetime.fromtimestamp(slot / 1000, UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def slots(expr: str, start: int, n: int, tz: str = "UTC") -> list[str]:
    cron, found, now = parse(expr, tz), [], start
    for _ in range(n):
        nxt = cron.next_after(now)
        assert nxt is not None
        found.append(at(nxt, tz))
        now = nxt
    return found


def test_the_next_slot_is_strictly_after_the_time_given() -> None:
    cron = parse("0 2 * * *")
    assert at(cron.next_after(ms(2026, 1, 1, 1, 59))) == "2026-01-01 02:00 UTC"
    assert at(cron.next_after(ms(2026, 1, 1, 2, 0))) == "2026-01-02 02:00 UTC"  # at the slot: the next one


def test_lists_ranges_steps_and_names() -> None:
    assert slots("*/20 9-10 * JAN MON-FRI", ms(2026, 1, 2, 10, 30), 3) == [
        "2026-01-02 10:40 UTC",  # a Friday
        "2026-01-05 09:00 UTC",  # then Monday: the weekend skipped
        "2026-01-05 09:20 UTC",
    ]
    assert slots("0 0 1,15 * *", ms(2026, 1, 1, 12, 0), 2) == ["2026-01-15 00:00 UTC", "2026-02-01 00:00 UTC"]


def test_when_both_day_fields_are_restricted_either_matches() -> None:
    # Vixie cron: the 13th of the month OR a Friday (not only Friday the 13th).
    assert slots("0 0 13 * FRI", ms(2026, 1, 1), 4) == [
        "2026-01-02 00:00 UTC",
        "2026-01-09 00:00 UTC",
        "2026-01-13 00:00 UTC",  # a Tuesday
        "2026-01-16 00:00 UTC",
    ]
    # With one of them `*`, only the other one restricts.
    assert slots("0 0 13 * *", ms(2026, 1, 1), 2) == ["2026-01-13 00:00 UTC", "2026-02-13 00:00 UTC"]


@pytest.mark.parametrize(
    ("alias", "first"),
    [
        ("@hourly", "2026-01-01 13:00 UTC"),
        ("@daily", "2026-01-02 00:00 UTC"),
        ("@midnight", "2026-01-02 00:00 UTC"),
        ("@weekly", "2026-01-04 00:00 UTC"),  # Sunday
        ("@monthly", "2026-02-01 00:00 UTC"),
        ("@yearly", "2027-01-01 00:00 UTC"),
    ],
)
def test_aliases(alias: str, first: str) -> None:
    assert slots(alias, ms(2026, 1, 1, 12, 30), 1) == [first]


def test_a_time_zone_sets_the_clock_of_the_slots() -> None:
    cron = parse("0 2 * * *", "America/New_York")
    assert at(cron.next_after(ms(2026, 1, 1)), "America/New_York") == "2026-01-01 02:00 EST"
    assert at(cron.next_after(ms(2026, 1, 1))) == "2026-01-01 07:00 UTC"


def test_a_slot_in_the_hour_the_clocks_skip_fires_once_at_the_first_valid_time() -> None:
    # Europe/London springs forward on 2026-03-29: 01:00 GMT -> 02:00 BST; 01:30 does not exist that day.
    assert slots("30 1 * * *", ms(2026, 3, 28, 12, 0, tz="Europe/London"), 3, "Europe/London") == [
        "2026-03-29 02:00 BST",
        "2026-03-30 01:30 BST",
        "2026-03-31 01:30 BST",
    ]


def test_a_fixed_time_in_the_hour_that_repeats_fires_once() -> None:
    # Falls back on 2026-10-25: 02:00 BST -> 01:00 GMT; 01:30 happens twice, the slot fires in the first.
    assert slots("30 1 * * *", ms(2026, 10, 24, 12, 0, tz="Europe/London"), 2, "Europe/London") == [
        "2026-10-25 01:30 BST",
        "2026-10-26 01:30 GMT",
    ]


def test_an_expression_that_fires_every_few_minutes_keeps_its_pace_through_the_repeated_hour() -> None:
    start = ms(2026, 10, 25, 0, 45, tz="Europe/London")
    assert slots("*/30 * * * *", start, 5, "Europe/London") == [  # every 30 minutes of real time
        "2026-10-25 01:00 BST",
        "2026-10-25 01:30 BST",
        "2026-10-25 01:00 GMT",
        "2026-10-25 01:30 GMT",
        "2026-10-25 02:00 GMT",
    ]


def test_catch_up_all_last_none() -> None:
    cron = parse("0 * * * *")  # hourly
    first, now = ms(2026, 1, 1, 1, 0), ms(2026, 1, 1, 5, 30)  # slots 01:00 .. 05:00 were missed
    assert [at(s) for s in cron.due(first, now, "all")] == [f"2026-01-01 0{h}:00 UTC" for h in range(1, 6)]
    assert [at(s) for s in cron.due(first, now, "last")] == ["2026-01-01 05:00 UTC"]
    assert cron.due(first, now, "none") == []  # all missed: none fires
    # A slot due right now (the timer woke a little late) is on time, whatever the catch-up.
    on_time = ms(2026, 1, 1, 5, 0) + ON_TIME_MS
    assert [at(s) for s in cron.due(first, on_time, "none")] == ["2026-01-01 05:00 UTC"]
    assert cron.due(ms(2026, 1, 1, 5, 0), ms(2026, 1, 1, 5, 0), "last") == [ms(2026, 1, 1, 5, 0)]


def test_catch_up_all_is_bounded_to_the_latest_slots() -> None:
    cron = parse("* * * * *")
    first, now = ms(2026, 1, 1), ms(2026, 1, 3)  # 2880 minutes missed
    due = cron.due(first, now, "all")
    assert len(due) == MAX_CATCH_UP and due[-1] == now and due == sorted(due)


@pytest.mark.parametrize(
    ("expr", "tz", "says"),
    [
        ("0 2 * *", "UTC", "want 5 fields"),
        ("61 * * * *", "UTC", "bad minute"),
        ("0 0 30 2 *", "UTC", "bad day-of-month"),
        ("0 0 * * FUNDAY", "UTC", "bad day-of-week"),
        ("@fortnightly", "UTC", "want 5 fields"),
        ("0 2 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("0 2 * * *", "../etc/passwd", "unknown time zone"),
    ],
)
def test_what_cannot_be_used_is_one_line_naming_it(expr: str, tz: str, says: str) -> None:
    with pytest.raises(CronError) as raised:
        parse(expr, tz)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_local_time_shows_the_zone() -> None:
    assert local_time(ms(2026, 7, 1, 1, 0), "Europe/London") == "2026-07-01 02:00 BST"
