"""The one backoff every reconnect loop uses: delays grow to a cap, reset after success, and a bounded
series gives up instead of waiting for ever."""

from __future__ import annotations

import anyio
import pytest

from gridd.client.backoff import Backoff

pytestmark = pytest.mark.anyio


async def test_delays_double_up_to_the_cap_and_start_again_after_a_success() -> None:
    backoff = Backoff(0.001, 0.004, jitter=0)
    seen = []
    for _ in range(4):
        seen.append(backoff.next_delay_s)
        assert await backoff.wait()
    assert seen == [0.001, 0.002, 0.004, 0.004]
    backoff.reset()
    assert backoff.next_delay_s == 0.001


async def test_a_bounded_series_gives_up_once_its_time_has_passed_without_sleeping_again() -> None:
    backoff = Backoff(0.005, 0.005, give_up_after_s=0.02)
    started = anyio.current_time()
    waits = 0
    with anyio.fail_after(2):
        while await backoff.wait():
            waits += 1
    assert 3 <= waits <= 5  # 0.02 s of 5 ms delays (± 20 %)
    assert anyio.current_time() - started < 0.5


def test_nonsense_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="first_s"):
        Backoff(2, 1)
