"""The budget's last epoch on scripted timelines (tuner.engine.pace): which
call it is cut at, and whether the next epoch is worth starting."""

from __future__ import annotations

import pytest

from tuner.engine.pace import EVAL_TRACE, MIN_PART, UNTIMED_VALIDATION, Pace


def run_epoch(pace: Pace, start: float, calls: list[float]) -> float:
    """An epoch whose calls take `calls` seconds each, from `start`; its end."""
    pace.epoch_begin(start)
    now = start
    for c in calls:
        now += c
        pace.call_end(now)
    return now


def test_the_runs_first_call_holds_the_trace_and_is_left_out_of_the_rate():
    pace = Pace(val_share=0.2, calls_per_epoch=10)
    run_epoch(pace, 0.0, [30.0] + [1.0] * 9)
    assert pace.call_seconds == 1.0 and pace.train_seconds() == 10.0
    # no validation timed yet: from the images it scores, with a margin and a part of the trace
    assert pace.validation_seconds() == pytest.approx(UNTIMED_VALIDATION * 0.2 * 10 + EVAL_TRACE * 29)
    pace.validation(5.0)  # the first validation traced the test step: an upper bound
    assert pace.validation_seconds() == 5.0
    pace.validation(2.0)
    pace.validation(2.5)
    assert pace.validation_seconds() == 2.25  # the later ones only
    run_epoch(pace, 100.0, [1.5] * 10)  # a later epoch's first call is a call like any other
    assert pace.call_seconds == 1.5 and len(pace._calls) == 19


def test_the_epoch_is_cut_at_the_call_after_which_its_validation_would_not_fit():
    pace = Pace(val_share=0.2, calls_per_epoch=10)
    run_epoch(pace, 0.0, [30.0] + [1.0] * 9)
    pace.validation(3.0)
    pace.validation(3.0)
    pace.epoch_begin(50.0)
    pace.call_end(51.0)
    assert not pace.cut_now(None, validates=True)  # no budget, no cut
    assert not pace.cut_now(4.0, validates=True)  # one more call (1 s) and the validation (3 s) fit
    assert pace.cut_now(3.9, validates=True)
    assert not pace.cut_now(3.9, validates=False)  # an epoch that does not validate needs only its calls
    assert pace.cut_now(0.9, validates=False)
    for t in range(52, 60):
        pace.call_end(float(t))
    pace.call_end(60.0)  # the epoch's last call: it ends by itself, nothing to cut
    assert pace.done == 10 and not pace.cut_now(0.0, validates=True)


def test_past_the_budget_the_epoch_is_cut_even_before_a_rate_is_known():
    """A run's first call (its trace) took the whole budget: cut after it."""
    pace = Pace(val_share=0.2, calls_per_epoch=10)
    pace.epoch_begin(0.0)
    pace.call_end(40.0)
    assert pace.call_seconds is None and pace.validation_seconds() is None
    assert not pace.cut_now(5.0, validates=True)  # nothing known yet: go on
    assert pace.cut_now(0.0, validates=True) and pace.cut_now(-1.0, validates=False)


def test_the_next_epoch_starts_when_a_quarter_of_its_training_and_its_validation_fit():
    pace = Pace(val_share=0.2, calls_per_epoch=20)
    assert pace.least_worth_starting(True) is None  # nothing timed: the caller falls back
    run_epoch(pace, 0.0, [30.0] + [1.0] * 19)
    pace.validation(6.0)
    assert pace.least_worth_starting(True) == MIN_PART * 20 + 6.0
    assert pace.least_worth_starting(False) == MIN_PART * 20
    one = Pace(val_share=0.2, calls_per_epoch=2)  # a call is more than a quarter of this epoch
    run_epoch(one, 0.0, [30.0, 4.0])
    assert one.least_worth_starting(False) == 4.0
