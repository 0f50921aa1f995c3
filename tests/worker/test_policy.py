"""The host-idle policy, driven with made-up samples and explicit times (no clock, no host)."""

from __future__ import annotations

import datetime

import pytest

from gridd.protocol.errors import ConfigError
from gridd.worker.policy import Decision, HostPolicy, HostSample, PolicySettings, Window

NOON = datetime.time(12, 0)
AWAY = HostSample(owner_load=0.05, user_idle_s=3600.0)  # quiet machine, nobody typing for an hour
TYPING = HostSample(owner_load=0.05, user_idle_s=2.0)
LOADED = HostSample(owner_load=0.9, user_idle_s=3600.0)


def at(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text)


def test_without_when_idle_or_window_the_machine_always_runs_jobs() -> None:
    policy = HostPolicy(PolicySettings())
    for now_s, sample in enumerate([TYPING, LOADED, HostSample(None, None, idle=False), AWAY]):
        assert policy.decide(sample, NOON, float(now_s), suspended_since_s=None) is Decision.RUN
        assert policy.state == "idle"


@pytest.mark.parametrize(
    ("t", "inside"),
    [
        ("20:00", True),
        ("23:59:59", True),
        ("00:00", True),
        ("05:59:59", True),
        ("06:00", False),
        ("12:00", False),
        ("19:59:59", False),
    ],
)
def test_a_window_crossing_midnight_covers_the_night_and_ends_before_its_end_time(t: str, inside: bool) -> None:
    assert Window.parse("20:00-06:00").contains(at(t)) is inside


def test_a_daytime_window_covers_only_its_hours() -> None:
    window = Window.parse("09:30-17:00")
    assert [window.contains(at(t)) for t in ("09:29", "09:30", "16:59", "17:00")] == [False, True, True, False]
    assert str(window) == "09:30-17:00"


@pytest.mark.parametrize("text", ["00:00-00:00", "08:15-08:15", " 7:00-7:00 "])
def test_a_window_with_equal_ends_is_the_whole_day(text: str) -> None:
    window = Window.parse(text)
    assert all(window.contains(datetime.time(h, m)) for h in range(24) for m in (0, 59))


@pytest.mark.parametrize(
    "text", ["", "20:00", "8-17", "24:00-06:00", "08:60-09:00", "20:00-06:00-07:00", "ab:cd-ef:gh", "20:00 - 06:00"]
)
def test_a_malformed_window_is_a_config_error_that_quotes_the_text(text: str) -> None:
    with pytest.raises(ConfigError, match="bad time window") as caught:
        Window.parse(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    "settings",
    [
        PolicySettings(window=Window.parse("20:00-06:00")),
        PolicySettings(window=Window.parse("20:00-06:00"), when_idle=True),
    ],
)
def test_outside_the_window_the_machine_is_taken_back_even_when_nobody_uses_it(settings: PolicySettings) -> None:
    policy = HostPolicy(settings)
    assert policy.decide(AWAY, at("21:00"), 0.0, None) is Decision.RUN
    assert policy.decide(AWAY, at("06:00"), 5.0, None) is Decision.SUSPEND
    assert policy.state == "outside-window"
    assert policy.decide(AWAY, at("20:00"), 10.0, 5.0) is Decision.RUN  # no cool-down at the window's edge
    assert policy.state == "idle"


def test_with_only_a_window_a_busy_owner_inside_it_does_not_matter() -> None:
    policy = HostPolicy(PolicySettings(window=Window.parse("00:00-23:00")))
    for sample in (TYPING, LOADED, HostSample(None, None, idle=False)):
        assert policy.decide(sample, NOON, 0.0, None) is Decision.RUN


def test_an_outside_window_machine_set_to_vacate_hands_its_jobs_back() -> None:
    policy = HostPolicy(PolicySettings(window=Window.parse("20:00-06:00"), on_busy="vacate"))
    assert policy.decide(AWAY, NOON, 0.0, None) is Decision.VACATE


@pytest.mark.parametrize(("on_busy", "expected"), [("suspend", Decision.SUSPEND), ("vacate", Decision.VACATE)])
@pytest.mark.parametrize("owner", [TYPING, LOADED], ids=["typing", "loaded"])
def test_when_the_owner_returns_jobs_are_suspended_or_vacated_as_configured(
    on_busy: str, expected: Decision, owner: HostSample
) -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, on_busy=on_busy))
    assert policy.decide(AWAY, NOON, 0.0, None) is Decision.RUN  # idle at start: runs at once
    assert policy.decide(owner, NOON, 5.0, None) is expected
    assert policy.state == "owner-busy"


def test_load_at_the_limit_and_input_just_older_than_idle_after_still_count_as_idle() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, max_load=0.5, idle_after_s=60.0))
    assert policy.decide(HostSample(owner_load=0.5, user_idle_s=60.0), NOON, 0.0, None) is Decision.RUN
    assert policy.decide(HostSample(owner_load=0.51, user_idle_s=60.0), NOON, 1.0, None) is Decision.SUSPEND


def test_a_job_suspended_longer_than_suspend_max_is_vacated() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, suspend_max_s=600.0))
    assert policy.decide(TYPING, NOON, 100.0, suspended_since_s=None) is Decision.SUSPEND
    assert policy.decide(TYPING, NOON, 699.0, suspended_since_s=100.0) is Decision.SUSPEND
    assert policy.decide(TYPING, NOON, 700.0, suspended_since_s=100.0) is Decision.VACATE


def test_without_suspend_max_a_suspended_job_waits_as_long_as_it_takes() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True))
    assert policy.decide(TYPING, NOON, 1e9, suspended_since_s=0.0) is Decision.SUSPEND


def test_after_the_owner_leaves_jobs_resume_only_after_resume_after_s_of_quiet() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=60.0))
    assert policy.decide(LOADED, NOON, 0.0, None) is Decision.SUSPEND
    for now_s in (5.0, 30.0, 59.9):
        assert policy.decide(AWAY, NOON, now_s, 0.0) is Decision.SUSPEND
        assert policy.state == "owner-busy"
    assert policy.decide(AWAY, NOON, 60.0, 0.0) is Decision.RUN
    assert policy.state == "idle"


def test_an_owner_who_comes_and_goes_every_few_seconds_does_not_make_jobs_flap() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=60.0))
    decisions = [policy.decide(TYPING if i % 4 == 0 else AWAY, NOON, i * 5.0, 0.0) for i in range(40)]
    assert set(decisions) == {Decision.SUSPEND}  # a busy sample every 20 s: never 60 s of quiet
    assert policy.decide(AWAY, NOON, 39 * 5.0 + 5.0, 0.0) is Decision.SUSPEND  # 20 s after the last busy one
    assert policy.decide(AWAY, NOON, 36 * 5.0 + 60.0, 0.0) is Decision.RUN


def test_a_busy_sample_suspends_at_once_even_with_no_cool_down() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=0.0))
    assert policy.decide(LOADED, NOON, 0.0, None) is Decision.SUSPEND
    assert policy.decide(AWAY, NOON, 0.0, 0.0) is Decision.RUN


def test_no_interactive_session_counts_as_away_so_only_load_decides() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=0.0))
    assert policy.decide(HostSample(owner_load=0.1, user_idle_s=None), NOON, 0.0, None) is Decision.RUN
    assert policy.decide(HostSample(owner_load=0.8, user_idle_s=None), NOON, 1.0, None) is Decision.SUSPEND


def test_an_unknown_load_is_decided_by_user_input_alone() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=0.0))
    assert policy.decide(HostSample(owner_load=None, user_idle_s=None), NOON, 0.0, None) is Decision.RUN
    assert policy.decide(HostSample(owner_load=None, user_idle_s=1.0), NOON, 1.0, None) is Decision.SUSPEND


def test_an_admin_probe_verdict_overrides_load_and_input() -> None:
    policy = HostPolicy(PolicySettings(when_idle=True, resume_after_s=0.0))
    assert policy.decide(HostSample(owner_load=1.0, user_idle_s=0.0, idle=True), NOON, 0.0, None) is Decision.RUN
    assert policy.decide(HostSample(owner_load=0.0, user_idle_s=1e6, idle=False), NOON, 1.0, None) is Decision.SUSPEND


@pytest.mark.parametrize(
    ("field", "value"),
    [("on_busy", "kill"), ("max_load", 1.5), ("max_load", -0.1), ("idle_after_s", -1.0), ("suspend_max_s", -5.0)],
)
def test_nonsense_settings_are_config_errors_naming_the_setting(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        PolicySettings(**{field: value})  # type: ignore[arg-type]
