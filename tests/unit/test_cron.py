"""The product's one cron dialect (kiosk/cron.py): five fields, or six with the seconds last, for
the settings' periodic crons and the schedules alike."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

from kiosk import cron
from kiosk.settings import Settings

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_six_fields_put_the_seconds_last_as_procrastinate_reads_them() -> None:
    every_ten = cron.parse("* * * * * */10", "UTC")
    assert every_ten.next_runs(at("2026-01-01T12:00:03"), 2) == [
        at("2026-01-01T12:00:10"),
        at("2026-01-01T12:00:20"),
    ]
    # Minute 5 of each hour, at its 30th second.
    assert cron.parse("5 * * * * 30", "UTC").next_runs(at("2026-01-01T12:00:00"), 2) == [
        at("2026-01-01T12:05:30"),
        at("2026-01-01T13:05:30"),
    ]


def test_five_fields_and_aliases_are_unchanged() -> None:
    assert cron.check_expression(" */2  * * * * ") == "*/2 * * * *"
    assert cron.check_expression("@hourly") == "@hourly"
    assert cron.parse("0 9 * * 1-5", "UTC").next_runs(at("2026-01-02T10:00:00"), 1) == [
        at("2026-01-05T09:00:00")
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("*/30 * * * * *", "* * * * * */30"),
        ("0 */5 * * * *", "*/5 * * * * 0"),
        ("15 0 9 * * 1-5", "0 9 * * 1-5 15"),
        ("*/2 * * * *", "*/2 * * * *"),  # five fields: nothing to move
        ("@daily", "@daily"),
    ],
)
def test_seconds_first_to_last_keeps_the_ticks(old: str, new: str) -> None:
    assert cron.seconds_first_to_last(old) == new
    if len(old.split()) == 6:
        from croniter import croniter

        start = at("2026-01-01T00:00:00")
        before = croniter(old, start, second_at_beginning=True)
        after = croniter(new, start)
        assert [before.get_next(dt.datetime) for _ in range(5)] == [
            after.get_next(dt.datetime) for _ in range(5)
        ]


def test_a_seconds_first_leftover_is_refused_with_the_expression_to_use() -> None:
    with pytest.raises(cron.InvalidCron, match=r"seconds come last.*'\* \* \* \* \* \*/30'"):
        cron.check_expression("*/30 * * * * *")
    assert cron.check_expression("* * * * * *") == "* * * * * *"  # every second, either way


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "invalid cron expression"),
        ("@reboot", "unknown cron alias"),
    ],
)
def test_bad_expressions_say_why(expression: str, reason: str) -> None:
    with pytest.raises(cron.InvalidCron, match=reason):
        cron.check_expression(expression)


def test_the_settings_check_their_crons_with_the_same_dialect(settings_env: None) -> None:
    custom = Settings(expire_orders_cron=" * * * * *  */3")  # type: ignore[call-arg]
    assert custom.expire_orders_cron == "* * * * * */3"
    with pytest.raises(ValueError, match="seconds come last"):
        Settings(expire_orders_cron="*/3 * * * * *")  # type: ignore[call-arg]


def test_the_cron_module_is_a_leaf() -> None:
    source = Path(cron.__file__).read_text(encoding="utf-8")
    imported = [
        node.module or ""
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert [name for name in imported if name.split(".")[0] == "kiosk"] == []
