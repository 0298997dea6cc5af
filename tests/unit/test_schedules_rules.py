"""Schedules without a database: cron parsing, validation, masking and the dispatch plan."""

import datetime as dt

import pytest

from kiosk import cron
from kiosk.schedules import dispatcher, executor, spec
from kiosk.schedules.spec import InvalidSchedule, ScheduleSpec

UTC = dt.UTC
PUBLIC = "http://93.184.215.14/hook"  # a public literal address: no DNS needed


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_five_and_six_field_crons_seconds_last():
    every_ten_seconds = cron.parse("* * * * * */10", "UTC")
    assert every_ten_seconds.next_runs(at("2026-01-01T12:00:03"), 3) == [
        at("2026-01-01T12:00:10"),
        at("2026-01-01T12:00:20"),
        at("2026-01-01T12:00:30"),
    ]
    weekdays = cron.parse("0 9 * * 1-5", "UTC")
    assert weekdays.next_runs(at("2026-01-02T10:00:00"), 1) == [
        at("2026-01-05T09:00:00")
    ]  # Friday -> Monday
    assert cron.parse("@hourly", "UTC").next_runs(at("2026-01-01T12:30:00"), 1) == [
        at("2026-01-01T13:00:00")
    ]


def test_ticks_follow_the_schedule_time_zone_across_dst():
    daily = cron.parse("30 2 * * *", "Europe/Madrid")
    ticks = daily.next_runs(at("2026-03-27T12:00:00"), 3)
    # 02:30 does not exist on 29 March in Madrid: croniter moves it to 03:00 local (01:00 UTC).
    assert [t.astimezone(UTC) for t in ticks] == [
        at("2026-03-28T01:30:00"),
        at("2026-03-29T01:00:00"),
        at("2026-03-30T00:30:00"),
    ]
    assert ticks[2].isoformat() == "2026-03-30T02:30:00+02:00"


def test_ticks_windows_are_half_open():
    every_second = cron.parse("* * * * * *", "UTC")
    start = at("2026-01-01T00:00:00")
    assert list(every_second.ticks(start, start + dt.timedelta(seconds=3))) == [
        start + dt.timedelta(seconds=s) for s in (1, 2, 3)
    ]
    assert list(every_second.ticks_back(start + dt.timedelta(seconds=3), start)) == [
        start + dt.timedelta(seconds=s) for s in (3, 2, 1)
    ]


@pytest.mark.parametrize(
    ("expression", "zone", "reason"),
    [
        ("* * * *", "UTC", "has 4 fields"),
        ("* * * * * * *", "UTC", "has 7 fields"),
        ("61 * * * *", "UTC", "invalid cron expression"),
        ("*/0 * * * *", "UTC", "invalid cron expression"),
        ("a b c d e", "UTC", "invalid cron expression"),
        ("0 0 31 2 *", "UTC", "never fires"),
        ("@reboot", "UTC", "unknown cron alias"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
        ("* * * * *", "../etc/passwd", "unknown time zone"),
    ],
)
def test_bad_crons_and_zones_say_why(expression, zone, reason):
    with pytest.raises(cron.InvalidCron, match=reason):
        cron.parse(expression, zone)


def good(**changes) -> ScheduleSpec:
    return ScheduleSpec(name="sync", cron="* * * * *", url=PUBLIC).evolve(**changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"name": "  "}, "name must be"),
        ({"method": "TRACE"}, "method 'TRACE'"),
        ({"url": "ftp://example.com/x"}, "only http"),
        ({"url": "http://user:pw@example.com/"}, "credentials"),
        ({"url": "not a url"}, "only http"),
        ({"headers": {"Bad Name": "x"}}, "not a valid HTTP field name"),
        ({"headers": {"X-Ok": "a\r\nInjected: yes"}}, "invalid value"),
        ({"headers": {"Connection": "close"}}, "per connection"),
        ({"headers": {"Transfer-Encoding": "chunked"}}, "per connection"),
        ({"headers": {"Host": "elsewhere"}}, "per connection"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "given twice"),
        ({"headers": {"Authorization": spec.MASK}}, "mask of a stored secret"),
        ({"body": "x" * (spec.MAX_BODY_BYTES + 1)}, "body is larger"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": 121}, "timeout_seconds"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 11}, "max_attempts"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"body": spec.MASK}, "mask of a stored body"),
        ({"url": f"{PUBLIC}?api_key={spec.MASK}"}, "masked query value"),
        ({"headers": {"X-Store": "1"}, "plain_headers": ["X-Other"]}, "not among the headers"),
        (
            {"headers": {"X-Partner-Token": "t"}, "plain_headers": ["x-partner-token"]},
            "cannot be marked plain",
        ),
        (
            {"headers": {"Authorization": "t"}, "plain_headers": ["Authorization"]},
            "cannot be marked plain",
        ),
    ],
)
def test_static_rules(changes, reason):
    with pytest.raises(InvalidSchedule, match=reason):
        spec.check_static(good(**changes))


def test_static_rules_normalise():
    checked = spec.check_static(good(name=" sync ", method="post", cron=" *  * * * * */5 "))
    assert (checked.name, checked.method, checked.cron) == ("sync", "POST", "* * * * * */5")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://[::1]/", "http://169.254.169.254/", "http://10.0.0.7/"]
)
async def test_internal_targets_are_refused_unless_allowed(url):
    with pytest.raises(InvalidSchedule, match="internal address"):
        await spec.validate(good(url=url), frozenset())
    assert await spec.validate(good(url="http://127.0.0.1:9/"), frozenset({"127.0.0.1"}))


def test_header_values_are_secret_unless_plain_by_name_or_by_mark():
    headers = {
        "Authorization": "Bearer s",
        "X-Bearer": "b",
        "X-Client-Code": "c",
        "X-Store": "12",
        "Content-Type": "application/json",
        "user-agent": "ua",
    }
    checked = spec.check_static(good(name="marked", headers=headers, plain_headers=["X-STORE"]))
    assert checked.plain_headers == ("x-store",) and checked.name == "marked"
    plain, secret = spec.split_headers(checked)
    assert plain == {"X-Store": "12", "Content-Type": "application/json", "user-agent": "ua"}
    assert secret == {"Authorization": "Bearer s", "X-Bearer": "b", "X-Client-Code": "c"}
    assert spec.has_secrets(checked) and not spec.has_secrets(good(headers={"Accept": "*/*"}))
    assert spec.has_secrets(good(body="{}")) and spec.has_secrets(good(url=PUBLIC + "?k=v"))


def test_urls_are_shown_with_query_values_masked():
    assert spec.mask_url("https://h.example/p?api_key=abc&page=2&flag&empty=#frag") == (
        f"https://h.example/p?api_key={spec.MASK}&page={spec.MASK}&flag&empty="
    )
    assert spec.mask_url("https://h.example:8443/p") == "https://h.example:8443/p"
    assert (
        spec.origin("https://H.example/x")
        == spec.origin("https://h.example:443/y")
        == ("https", "h.example", 443)
    )


def test_secret_headers_are_masked_and_kept_on_round_trip():
    stored = {
        "Authorization": "Bearer s3cr3t",
        "X-Api-Key": "k",
        "X-Partner-Token": "t",
        "Cookie": "a=b",
        "X-DB-Password": "p",
        "Accept": "application/json",
    }
    shown = spec.mask_headers(stored)
    assert shown == {
        "Authorization": spec.MASK,
        "X-Api-Key": spec.MASK,
        "X-Partner-Token": spec.MASK,
        "Cookie": spec.MASK,
        "X-DB-Password": spec.MASK,
        "Accept": "application/json",
    }
    edited = shown | {"Accept": "text/plain"}
    assert spec.unmask_headers(edited, stored) == stored | {"Accept": "text/plain"}


def test_plan_creates_ticks_ahead_and_skips_old_missed_ones():
    every_second = cron.parse("* * * * * *", "UTC")
    now = at("2026-01-01T12:00:00.500000")
    fresh = dispatcher.plan(every_second, now, now, horizon=3, catch_up_limit=2)
    assert fresh.upcoming == [
        at("2026-01-01T12:00:01"),
        at("2026-01-01T12:00:02"),
        at("2026-01-01T12:00:03"),
    ]
    assert fresh.skipped == fresh.catch_up == []

    after_outage = dispatcher.plan(
        every_second, now - dt.timedelta(seconds=10), now, horizon=1, catch_up_limit=2
    )
    assert after_outage.catch_up == [at("2026-01-01T11:59:59"), at("2026-01-01T12:00:00")]
    assert after_outage.skipped == [
        at("2026-01-01T11:59:51") + dt.timedelta(seconds=s) for s in range(8)
    ]
    assert after_outage.upcoming == [at("2026-01-01T12:00:01")]
    assert not after_outage.more_missed

    long_outage = dispatcher.plan(
        every_second, now - dt.timedelta(days=1), now, horizon=1, catch_up_limit=0
    )
    assert len(long_outage.skipped) == dispatcher.MAX_SKIPPED_ROWS and long_outage.more_missed


def test_dispatcher_cron_and_horizon():
    assert dispatcher.horizon_seconds(60) == 90 and dispatcher.horizon_seconds(2) == 7


def test_backoff_doubles_and_is_capped():
    assert [executor.backoff(n, 5) for n in (1, 2, 3)] == [5, 10, 20]
    assert executor.backoff(30, 5) == executor.MAX_BACKOFF


def test_logged_urls_drop_the_query():
    assert executor.loggable_url("https://h.example/p?token=abc#x") == "https://h.example/p"
