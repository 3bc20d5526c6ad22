"""incidents/lifecycle.py against minute patterns worked out by hand."""

from datetime import UTC, datetime, timedelta

from incidents.lifecycle import MinuteCounts, mitigation, regression_start, resolution, rolling

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
BUDGET = 0.01  # a 99% SLO: a minute burns above 1% bad


def series(pattern: str, start: datetime = T) -> list[MinuteCounts]:
    """'x' a minute half bad, '.' a good minute, ' ' a minute with no traffic."""
    return [
        MinuteCounts(start + M * i, 50 if c == "x" else 0, 100)
        for i, c in enumerate(pattern)
        if c != " "
    ]


def start(pattern: str, detected: int, **kw):
    return regression_start(
        series(pattern), threshold=BUDGET, detected_at=T + M * detected,
        reach=timedelta(minutes=15), **kw,
    )  # fmt: skip


def test_it_starts_at_the_first_minute_of_the_run_that_reaches_detection():
    assert start("....xxxxx", 9) == T + 4 * M


def test_a_quiet_gap_of_two_minutes_does_not_split_the_run():
    assert start("..xx..xxx", 9) == T + 2 * M
    assert start("..xx  xxx", 9) == T + 2 * M


def test_a_gap_of_three_good_minutes_ends_the_earlier_run():
    assert start("..xx...xx", 9) == T + 7 * M


def test_a_run_that_ended_long_before_detection_is_not_this_regression():
    assert start("xx" + "." * 28, 30) is None


def test_it_never_starts_before_the_change_that_caused_it():
    assert start("xxxxxxxx", 8, not_before=T + 3 * M + timedelta(seconds=20)) == T + 3 * M


def test_rolling_sums_the_minutes_of_the_window_with_gaps_as_zero():
    out = rolling(series("x x"), width=2)
    assert [(m.minute - T, m.bad, m.total) for m in out] == [
        (0 * M, 50, 100), (2 * M, 50, 100),
    ]  # fmt: skip


def mitigate(pattern: str, *, changes=(), now_minute: int, sustain: int = 15):
    return mitigation(
        series(pattern), threshold=BUDGET, started_at=T, changes=[T + M * c for c in changes],
        sustain=timedelta(minutes=sustain), now=T + M * now_minute,
    )  # fmt: skip


def test_mitigation_is_the_rollback_after_which_the_burn_stayed_below_one():
    # Burning minutes 0-9; the 5-minute rolling window still burns through minute 13.
    found = mitigate("x" * 10 + "." * 30, changes=[10], now_minute=40)
    assert found.calm_from == T + 14 * M
    assert found.change_at == T + 10 * M
    assert found.at == T + 10 * M


def test_without_a_change_mitigation_is_when_the_calm_began():
    found = mitigate("x" * 10 + "." * 30, now_minute=40)
    assert (found.at, found.change_at) == (T + 14 * M, None)


def test_a_change_long_before_the_calm_does_not_explain_it():
    found = mitigate("x" * 30 + "." * 30, changes=[5], now_minute=60)
    assert (found.at, found.change_at) == (T + 34 * M, None)


def test_no_mitigation_until_the_calm_has_lasted():
    assert mitigate("x" * 10 + "." * 10, changes=[10], now_minute=20) is None


def test_silence_is_not_recovery():
    assert mitigate("x" * 10, changes=[10], now_minute=40) is None


def test_a_new_burn_after_the_calm_moves_mitigation_later():
    found = mitigate("x" * 10 + "." * 10 + "xx" + "." * 30, changes=[10], now_minute=52)
    assert found.at == T + 26 * M and found.change_at is None


def test_resolution_waits_for_every_signal_to_close_and_stay_closed():
    closed = [T + 5 * M, T + 9 * M]
    assert resolution(closed, sustain=15 * M, now=T + 30 * M) == T + 9 * M
    assert resolution(closed, sustain=15 * M, now=T + 20 * M) is None
    assert resolution([T, None], sustain=15 * M, now=T + 60 * M) is None
    assert resolution([], sustain=15 * M, now=T) is None
