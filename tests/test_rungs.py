"""Rung decisions of early termination on scripted report sequences (pure
bookkeeping: no TensorFlow, no Keras Tuner)."""

from __future__ import annotations

import itertools
import json

import pytest

from tuner.engine.rungs import (AUTO_FRACTION, CONTINUE, PAUSE, STOP, EarlyTerminate, EarlyTermination, auto_min_iter,
                                describe_decision)


def hb(min_iter=2, eta=3, epochs=20, max_iter=None) -> EarlyTermination:
    return EarlyTermination(EarlyTerminate("hyperband", min_iter, eta, max_iter), epochs)


def test_rungs_are_min_iter_times_powers_of_eta_below_the_last_epoch():
    assert EarlyTerminate("hyperband", 2, 3).rungs(20) == [2, 6, 18]
    assert EarlyTerminate("hyperband", 2, 3).rungs(18) == [2, 6]
    assert EarlyTerminate("hyperband", 1, 2, max_iter=5).rungs(20) == [1, 2, 4]
    assert EarlyTerminate("hyperband", 5, 2).rungs(5) == []
    assert EarlyTerminate("median", 2, 3).rungs(20) == []


def test_first_trials_pause_until_eta_reach_the_rung_then_the_best_goes_on():
    et = hb()
    assert et.report("0", 1, 0.1) == (CONTINUE, [], [])
    assert et.report("0", 2, 0.3) == (PAUSE, [], [])
    et.report("1", 1, 0.5)
    assert et.report("1", 2, 0.4) == (PAUSE, [], [])  # best so far (0.5) is what counts
    assert et.report("2", 2, 0.2) == (STOP, ["1"], ["0"])
    assert et.decisions["1"]["state"] == "promoted"
    assert et.decisions["0"] == {"state": "stopped", "rung": 0, "epoch": 2}
    assert et.pending[0] == []


def test_the_arriving_trial_goes_straight_on_when_it_is_the_best():
    et = hb()
    et.report("0", 2, 0.1)
    et.report("1", 2, 0.2)
    assert et.report("2", 2, 0.9) == (CONTINUE, [], ["1", "0"])  # stopped, best first
    assert et.report("2", 6, 0.95) == (PAUSE, [], [])  # alone at rung 2: waits there


def test_ties_go_to_the_trial_that_reached_the_rung_first():
    et = hb()
    et.report("0", 2, 0.5)
    et.report("1", 2, 0.5)
    assert et.report("2", 2, 0.5) == (STOP, ["0"], ["1"])


def test_a_repeated_report_gets_the_decision_already_made_and_changes_nothing():
    et = hb()
    et.report("0", 2, 0.3)
    before = json.dumps(et.get_state(), sort_keys=True)
    assert et.report("0", 2, 0.3) == (PAUSE, [], [])
    assert json.dumps(et.get_state(), sort_keys=True) == before
    et.report("1", 2, 0.1)
    et.report("2", 2, 0.2)  # closes the rung: 0 promoted, 2 and 1 stopped
    assert et.report("2", 2, 0.2) == (STOP, [], [])
    assert et.report("0", 2, 0.3) == (CONTINUE, [], [])  # the promoted trial resumes at its rung


def test_fewer_trials_than_eta_close_the_rung_when_no_new_trial_will_come():
    et = hb()
    et.report("0", 2, 0.3)
    assert et.report("1", 2, 0.4, may_start_new=False) == (CONTINUE, [], ["0"])


def test_endgame_promotes_the_best_at_the_highest_rung_first():
    et = hb(min_iter=1, eta=3, epochs=20)
    for tid, v in (("0", 0.1), ("1", 0.9), ("2", 0.2)):
        et.report(tid, 1, v)  # rung 1 closes: 1 goes on
    et.report("1", 3, 0.9)  # paused at rung 2
    et.report("3", 1, 0.5)  # paused at rung 1
    et.report("4", 1, 0.6)  # paused at rung 1
    assert et.next_promotion() == (1, "1")
    assert et.close_highest() == (["1"], [])
    assert et.next_promotion() == (0, "4")
    assert et.close_highest() == (["4"], ["3"])
    assert et.next_promotion() is None


def test_median_rule_stops_below_the_median_of_eta_others_at_the_same_epoch():
    et = EarlyTermination(EarlyTerminate("median", 2, 3), epochs=10)
    for tid, v in (("0", 0.5), ("1", 0.6), ("2", 0.7)):
        et.report(tid, 1, v - 0.1)
        assert et.report(tid, 2, v)[0] == CONTINUE  # fewer than eta others at epoch 2
    assert et.report("3", 1, 0.1)[0] == CONTINUE  # before min_iter
    assert et.report("3", 2, 0.55)[0] == STOP  # median of 0.5, 0.6, 0.7 is 0.6
    assert describe_decision(et.decisions["3"]) == "stopped at epoch 2 (below the median)"
    et.report("4", 2, 0.65)
    assert et.state_of("4") == "running"


def test_a_nan_score_ranks_last_wherever_it_arrives():
    nan = float("nan")
    for goal, scores, want in (("max", {"a": nan, "b": 0.5, "c": 0.3}, ["b", "c", "a"]),
                               ("min", {"a": nan, "b": 0.3, "c": 0.5}, ["b", "c", "a"])):
        for arrival in itertools.permutations(scores):
            et = EarlyTermination(EarlyTerminate("hyperband", 2, 3), 20, goal)
            for tid in arrival:
                et.report(tid, 2, scores[tid])
            assert et._ranked(0, list(arrival)) == want, (goal, arrival)
            assert [et.state_of(t) for t in want] == ["promoted", "stopped", "stopped"], (goal, arrival)
    et = hb()
    et.report("0", 1, 0.4)
    et.report("0", 2, nan)  # a NaN epoch after a real one: the real one counts
    et.report("1", 2, 0.3)
    assert et.report("2", 2, nan) == (STOP, ["0"], ["1"])


def test_the_median_rule_neither_keeps_nor_counts_a_nan_trial():
    nan = float("nan")
    et = EarlyTermination(EarlyTerminate("median", 2, 3), epochs=10)
    for tid, v in (("0", 0.5), ("1", nan), ("2", 0.6), ("3", 0.7)):
        et.report(tid, 2, v)
    assert et.report("4", 2, nan)[0] == STOP
    assert et.report("5", 2, 0.59)[0] == STOP  # the median of 0.5, 0.6, 0.7: the NaNs are no trial's score
    assert et.report("6", 2, 0.61)[0] == CONTINUE


def test_state_round_trips_through_json():
    et = hb()
    et.report("0", 1, 0.1)
    et.report("0", 2, 0.3)
    again = hb()
    again.set_state(json.loads(json.dumps(et.get_state())))
    assert again.get_state() == et.get_state()
    assert again.report("1", 2, 0.4) == (PAUSE, [], [])
    assert describe_decision(again.decisions["0"]) == "paused at rung 1 (epoch 2)"


def curve(et: EarlyTermination, tid: str, values: list[float]) -> tuple[str, list[str], list[str]]:
    """Report epochs 1..len(values); the last answer."""
    for e, v in enumerate(values, 1):
        out = et.report(tid, e, v)
    return out


def test_a_trial_within_its_own_noise_of_the_cut_off_is_kept_paused_not_stopped():
    """Rung at epoch 4, best 1 of 3 goes on. Trial 0 jumps about by ~0.2
    from epoch to epoch; its best (0.52) is 0.03 below the cut-off (trial
    1's 0.55): a tie within its noise, so it stays paused at the rung.
    Trial 2, 0.35 below on a smooth curve, stops."""
    et = hb(min_iter=4, eta=3, epochs=20)
    curve(et, "0", [0.30, 0.50, 0.35, 0.52])
    curve(et, "1", [0.40, 0.45, 0.50, 0.55])
    assert curve(et, "2", [0.05, 0.10, 0.15, 0.20]) == (STOP, ["1"], [])
    assert et.state_of("0") == "paused" and et.pending[0] == ["0"]
    assert et.decisions["0"]["noise"] > 0.15
    assert describe_decision(et.decisions["0"]).startswith("paused at rung 1 (epoch 4), within its noise (0.")
    # judged again with the next two there: 0.38 below the next cut-off is
    # more than its noise
    curve(et, "3", [0.6, 0.7, 0.8, 0.9])
    assert curve(et, "4", [0.05, 0.06, 0.07, 0.08]) == (STOP, ["3"], ["0"])
    assert et.state_of("0") == "stopped" and et.pending[0] == []


def test_the_same_gap_on_a_smooth_curve_stops_the_trial():
    et = hb(min_iter=4, eta=3, epochs=20)
    curve(et, "0", [0.46, 0.48, 0.50, 0.52])  # moves 0.02 an epoch, steadily: no noise
    curve(et, "1", [0.40, 0.45, 0.50, 0.55])
    assert curve(et, "2", [0.05, 0.10, 0.15, 0.20]) == (STOP, ["1"], ["0"])


def test_a_trial_arriving_within_its_noise_of_the_cut_off_pauses():
    et = hb(min_iter=4, eta=3, epochs=20)
    curve(et, "0", [0.40, 0.45, 0.50, 0.55])
    curve(et, "1", [0.05, 0.10, 0.15, 0.20])
    assert curve(et, "2", [0.30, 0.50, 0.35, 0.52]) == (PAUSE, ["0"], ["1"])
    assert et.pending[0] == ["2"] and et.state_of("0") == "promoted"


def test_noise_needs_two_differences_and_ignores_a_steady_trend():
    et = hb(min_iter=4, eta=3, epochs=20)
    curve(et, "0", [0.1, 0.3])
    assert et.noise("0", 2) is None  # one difference: no estimate, the ranking decides
    curve(et, "1", [0.1, 0.2, 0.3, 0.4, 0.5])
    assert et.noise("1", 5) == pytest.approx(0.0, abs=1e-12)
    curve(et, "2", [0.5, 0.1, 0.5, 0.1, 0.5, 0.1])  # only the last 4 differences count, up to the epoch
    assert et.noise("2", 3) == pytest.approx(0.5657, abs=1e-3)


def test_the_median_rule_keeps_a_trial_below_the_median_within_its_noise():
    et = EarlyTermination(EarlyTerminate("median", 4, 3), epochs=10)
    for tid, v in (("0", 0.5), ("1", 0.6), ("2", 0.7)):
        curve(et, tid, [v - 0.3, v - 0.2, v - 0.1, v])
    assert curve(et, "3", [0.40, 0.58, 0.42, 0.57])[0] == CONTINUE  # 0.03 below the median, noise ~0.17
    assert curve(et, "4", [0.54, 0.55, 0.56, 0.57])[0] == STOP  # the same 0.03 on a smooth curve


def run_seconds(epochs: int) -> float:
    """20 s for a run's first epoch (its build and tracing), 10 s a later one."""
    return 20.0 + (epochs - 1) * 10.0


def test_min_iter_auto_is_a_fraction_of_the_epochs_and_at_least_two():
    assert AUTO_FRACTION == 0.4  # BENCHMARKS.md: ranks predict the end from 40% of the epochs
    assert auto_min_iter(90, 3) == 36
    assert auto_min_iter(18, 3) == 8  # ceil(7.2)
    assert auto_min_iter(4, 2) == 2 and auto_min_iter(2, 3) == 2
    assert EarlyTerminate("hyperband", "auto", 3).rungs(90) == [36]
    assert EarlyTerminate("hyperband", "auto", 2).rungs(20) == [8, 16]
    assert EarlyTerminate("hyperband", "auto", 3).rungs(2) == []
    assert EarlyTerminate("hyperband", "auto", 3).to_dict()["min_iter"] == "auto"


def test_min_iter_auto_does_not_explore_when_eta_trials_cannot_reach_it_in_half_the_budget():
    # 3 trials to epoch 8 (of 20) cost 3 x (20 + 70) = 270 s: half of 540 s holds them, half of 500 s does not
    assert auto_min_iter(20, 3, budget=540.0, run_seconds=run_seconds) == 8
    assert auto_min_iter(20, 3, budget=500.0, run_seconds=run_seconds) is None  # not lowered: no rung
    assert auto_min_iter(20, 3, budget=1e6, run_seconds=run_seconds) == 8  # never raised
    assert auto_min_iter(20, 3, budget=60.0, run_seconds=lambda r: None) == 8  # no cost known yet: the fraction
    assert auto_min_iter(20, 3, budget=None, run_seconds=run_seconds) == 8


def test_an_absolute_min_iter_is_not_moved_by_the_budget():
    et = hb(min_iter=2, eta=3, epochs=20)
    assert not et.settle_auto(60.0, run_seconds) and et.rung_epochs == [2, 6, 18]


def test_auto_rungs_settle_before_the_first_trial_reaches_them_and_then_stay():
    et = EarlyTermination(EarlyTerminate("hyperband", "auto", 3), 20)
    assert et.rung_epochs == [8]
    assert not et.settle_auto(540.0, run_seconds, reached=3)  # the budget holds the rung: unchanged
    assert et.settle_auto(500.0, run_seconds, reached=3) and et.rung_epochs == []  # no exploration
    assert et.first_epoch() == 1  # no decision before its end: a new trial needs only its first epoch to fit
    saved = json.loads(json.dumps(et.get_state()))
    again = EarlyTermination(EarlyTerminate("hyperband", "auto", 3), 20)
    again.set_state(saved)
    assert again.rung_epochs == []  # a resume keeps the settled rungs
    # the same command with more --max-time brings the rung back, unless a trial is past it
    for e in range(1, 10):
        again.report("0", e, 0.1 * e)
    assert not again.settle_auto(1e6, run_seconds) and again.rung_epochs == []  # trial 0 is at epoch 9
    fresh = EarlyTermination(EarlyTerminate("hyperband", "auto", 3), 20)
    fresh.set_state(saved)
    fresh.report("0", 5, 0.3)
    assert fresh.settle_auto(1e6, run_seconds) and fresh.rung_epochs == [8]
    for e in range(6, 9):
        fresh.report("0", e, 0.1 * e)  # trial 0 pauses at the rung, judged there: the rung stays
    assert not fresh.settle_auto(60.0, run_seconds) and fresh.rung_epochs == [8]
