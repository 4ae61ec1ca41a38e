"""The scheduler's decisions on scripted timelines: epoch reports with their
durations, workers that ask for work, a lost worker's trial coming back, a
kill and resume, the budget's end. Pure Python (no Keras, no TensorFlow):
the clock is the script's."""

from __future__ import annotations

import json

from tuner.engine.budget import COLD, LATER, Deadline
from tuner.engine.rungs import CONTINUE, PAUSE, STOP, EarlyTerminate, EarlyTermination
from tuner.engine.scheduler import NEW, NONE, RESUME, WAIT, Scheduler

VALUES = {"backbone": "resnet50v2", "image_size": 32}


class ScriptDeadline(Deadline):
    """A deadline on the script's clock: `now` moves as epochs are reported."""

    def __init__(self, at: float | None):
        super().__init__(at)
        self.now = 0.0

    def left(self) -> float | None:
        return None if self.at is None else self.at - self.now


class Timeline:
    """Plays the oracle's side: creates the trials NEW asks for, tracks which
    trial each worker holds, and advances the clock by each epoch's seconds
    (20 s a run's first epoch, 10 s a later one, unless told)."""

    def __init__(self, et=("hyperband", 2, 3), epochs=6, trials=9, budget: float | None = None):
        self.trials: list[str] = []
        self.held: dict[str, str] = {}  # worker -> trial
        self.deadline = ScriptDeadline(budget)
        early = EarlyTermination(EarlyTerminate(*et), epochs) if et else None
        self.s = Scheduler(early, epochs, self.deadline, values_of=lambda tid: VALUES,
                           cap_reached=lambda: len(self.trials) >= trials)

    def ask(self, worker="w") -> tuple[str, str | None]:
        choice = self.s.choose_trial_to_run(self.running(worker), current=self.held.get(worker))
        if choice.action == NEW:
            tid = str(len(self.trials))
            self.trials.append(tid)
            self.held[worker] = tid
            return NEW, tid
        if choice.action == RESUME:
            self.held[worker] = choice.trial_id
        return choice.pair()

    def running(self, worker=None) -> list[str]:
        return [t for w, t in self.held.items() if w != worker]

    def epoch(self, tid, e, value, seconds=None, first=False, finished=False) -> str:
        seconds = seconds if seconds is not None else (20.0 if first else 10.0)
        self.deadline.now += seconds
        self.s.on_epoch_cost(tid, seconds, COLD if first else LATER)
        return self.s.on_trial_result(tid, e, value, finished=finished, running=list(self.held.values())).decision

    def run(self, tid, start, stop, values, worker="w") -> str:
        """Epochs start..stop of one run (values per epoch); the run ends
        at the first decision that is not CONTINUE."""
        for i, e in enumerate(range(start, stop + 1)):
            d = self.epoch(tid, e, values[i], first=(i == 0))
            if d != CONTINUE:
                break
        self.end(worker)
        return d

    def end(self, worker="w") -> str:
        tid = self.held.pop(worker)
        return self.s.on_trial_complete(tid)


def test_a_search_on_one_machine_pauses_promotes_and_continues_before_exploring():
    t = Timeline()
    assert t.ask() == (NEW, "0")
    assert t.run("0", 1, 2, [0.2, 0.6]) == PAUSE  # first at rung 1 (epoch 2)
    assert t.s.state_of("0") == "paused"
    assert t.ask() == (NEW, "1")
    assert t.run("1", 1, 2, [0.05, 0.1]) == PAUSE
    assert t.ask() == (NEW, "2")
    assert t.run("2", 1, 2, [0.1, 0.3]) == STOP  # the group is full: 0 goes on, 1 and 2 stop
    assert t.s.state_of("0") == "queued" and t.s.state_of("1") == "stopped"
    assert t.ask() == (RESUME, "0")  # a promoted trial before any new one
    assert t.run("0", 3, 6, [0.6, 0.7, 0.7, 0.8]) == CONTINUE  # no rung at 6 of 6: to the end
    assert t.ask() == (NEW, "3")


def test_a_worker_waits_while_another_trial_may_still_pause_then_is_let_go():
    t = Timeline(et=None, trials=1)
    assert t.ask("a") == (NEW, "0")
    assert t.ask("b") == (WAIT, None)  # the cap is reached, but trial 0 may come back
    t.epoch("0", 1, 0.5)
    t.end("a")
    assert t.ask("b") == (NONE, None)
    assert not t.s.budget_refused  # over because the trials are done, not the budget


def test_a_lost_workers_trial_comes_back_to_the_next_free_worker_first():
    t = Timeline(et=("hyperband", 1, 2), epochs=4)
    assert t.ask("a") == (NEW, "0")
    assert t.ask("b") == (NEW, "1")
    t.held.pop("a")  # a vanishes before its first report: its lease runs out
    assert t.s.on_trial_lost("0") and not t.s.on_trial_lost("0")  # queued once
    assert t.s.is_queued("0")
    assert t.ask("c") == (RESUME, "0")  # before any new trial
    assert not t.s.is_queued("0")
    # b reaches rung 1 while 0 is running again: it pauses and waits for it
    assert t.epoch("1", 1, 0.4, first=True) == PAUSE
    t.end("b")
    # 0's first epoch, on c, closes the pair: 0 goes on, 1 stops
    assert t.epoch("0", 1, 0.5, first=True) == CONTINUE
    assert t.s.state_of("1") == "stopped"


def test_a_failed_trial_leaves_its_rung_and_the_queue():
    t = Timeline()
    t.ask()
    t.run("0", 1, 2, [0.1, 0.2])
    t.s.on_trial_lost("0")
    t.s.on_trial_error("0")
    assert not t.s.is_queued("0") and t.s.early.paused() == []
    assert t.ask() == (NEW, "1")


def test_the_budget_starts_no_trial_that_cannot_reach_its_first_rung():
    t = Timeline(budget=25.0)
    assert t.ask() == (NEW, "0")  # nothing measured: start one and measure
    assert t.epoch("0", 1, 0.2, first=True) == CONTINUE
    # a new trial needs 30 s to reach rung 1 and 5 s are left: none can join
    # trial 0 there, so it goes on rather than pause
    assert t.epoch("0", 2, 0.3) == CONTINUE
    t.end()
    assert not t.s.new_trial_fits(VALUES) and t.s.budget_refused
    assert t.s.choose_trial_to_run(sampler_declined=True).pair() == (NONE, None)
    # said with its figures, for the search's last lines
    assert t.s.refused_why.endswith(" left, less than a new trial needs to reach its first decision at epoch 2 "
                                    "(about 30s)"), t.s.refused_why


def test_a_promoted_trial_whose_next_epoch_does_not_fit_stays_queued():
    t = Timeline(budget=1000.0)
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        assert t.ask() == (NEW, tid)
        t.run(tid, 1, 2, [f1 / 2, f1])
    assert t.s.queue == ["0"]
    t.deadline.now = t.deadline.at - 5.0  # a 10-s epoch does not fit
    assert t.ask() == (NONE, None)
    assert t.s.budget_refused and t.s.queue == ["0"]  # for the same command with more time
    assert t.s.refused_why == "5s left, less than trial 0's next epoch (about 20s)"  # its rebuild included


def leader_paused_at_rung_2() -> Timeline:
    """Three trials met at rung 1 (epoch 2: 30 s for a new trial); the best,
    trial 0, went on and waits alone at rung 2 (epoch 6); taking it to rung
    3 (epoch 18) costs 20 s + 11 x 10 s."""
    t = Timeline(epochs=20, budget=10_000.0)  # rungs 2, 6, 18
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        assert t.ask() == (NEW, tid)
        t.run(tid, 1, 2, [f1 / 2, f1])
    assert t.ask() == (RESUME, "0")
    assert t.run("0", 3, 6, [0.4] * 4) == PAUSE  # alone at rung 2, with time to explore
    return t


def test_the_endgame_continues_the_best_paused_trial_instead_of_exploring():
    # a new trial would wait at rung 1 for two more (3 x 30 s), then trial 0
    # needs 130 s: 220 s hold both, 219 s do not
    t = leader_paused_at_rung_2()
    t.deadline.now = t.deadline.at - 219.0
    assert t.ask() == (RESUME, "0") and t.s.state_of("0") == "promoted"
    t = leader_paused_at_rung_2()
    t.deadline.now = t.deadline.at - 221.0
    assert t.ask() == (NEW, "3")


def test_the_leader_arriving_at_a_rung_in_the_endgame_goes_on_without_a_pause():
    t = Timeline(epochs=20, budget=10_000.0)
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        t.ask()
        t.run(tid, 1, 2, [f1 / 2, f1])
    t.ask()
    for e in range(3, 6):
        t.epoch("0", e, 0.4, first=e == 3)
    t.deadline.now = t.deadline.at - 150.0 + 10.0  # epoch 6 takes 10 s: 150 s left after it
    assert t.epoch("0", 6, 0.45) == CONTINUE and t.s.state_of("0") == "promoted"


def test_a_kill_between_the_rung_report_and_its_pause_gives_the_same_decision_once():
    t = Timeline()
    t.ask()
    assert t.run("0", 1, 2, [0.1, 0.3]) == PAUSE
    saved = json.loads(json.dumps(t.s.get_state()))  # oracle.json at the decision; then a kill
    again = Timeline()
    again.s.set_state(saved)
    assert again.s.on_trial_result("0", 2, 0.3).decision == PAUSE  # the resumed run reports epoch 2 again
    assert again.s.get_state() == saved


def test_a_project_saved_before_the_scheduler_resumes_with_its_queue():
    """The old oracle kept promoted and lost trials in Keras Tuner's retry
    queue, popped from its end: the last one there runs first."""
    old = Timeline()
    old.ask()
    old.run("0", 1, 2, [0.1, 0.3])
    ours = old.s.get_state()
    del ours["queue"]
    t = Timeline()
    t.s.set_state(ours, legacy_queue=["4", "7"])
    assert t.s.queue == ["7", "4"] and t.s.early.paused() == ["0"]
    assert t.s.choose_trial_to_run().pair() == (RESUME, "7")


def test_min_iter_auto_keeps_its_rung_when_the_budget_holds_it():
    """20 epochs: auto puts the first rung at 8. At 20 s + 10 s an epoch, 3
    trials reach it in 270 s: half of --max-time 600 s holds them."""
    t = Timeline(et=("hyperband", "auto", 3), epochs=20, budget=600.0)
    t.s.begin(600.0)
    assert t.s.early.rung_epochs == [8]
    assert t.ask() == (NEW, "0")
    for e in range(1, 8):
        assert t.epoch("0", e, 0.1 * e, first=(e == 1)) == CONTINUE
    assert t.s.early.rung_epochs == [8]
    assert t.epoch("0", 8, 0.8) == PAUSE  # waits there for two more


def test_min_iter_auto_does_not_explore_when_the_budget_cannot_fill_its_rung():
    """The same at --max-time 400 s: once a later epoch is timed (a first
    epoch alone holds the tracing), 3 trials to epoch 8 (270 s) exceed half
    the budget, so the rung goes, said once; trial 0 trains on past it, and
    a new trial starts while its first epoch fits (it need not train whole)."""
    said: list[str] = []
    t = Timeline(et=("hyperband", "auto", 3), epochs=20, budget=400.0)
    t.s.log = said.append
    t.s.begin(400.0)
    assert t.s.early.rung_epochs == [8]  # nothing measured yet
    assert t.ask() == (NEW, "0")
    assert t.epoch("0", 1, 0.1, first=True) == CONTINUE and t.s.early.rung_epochs == [8]
    assert t.epoch("0", 2, 0.2) == CONTINUE
    assert t.s.early.rung_epochs == []
    told = [m for m in said if m.startswith("min_iter auto")]
    assert told == ["min_iter auto: 3 trials to epoch 8, where ranks start to predict the end, take about 4m30s, "
                    "more than half of the 6m40s budget: no early termination this run; each trial trains to its "
                    "end or the budget's (more --max-time explores)"], said
    for e in range(3, 21):
        assert t.epoch("0", e, 0.05 * e) == CONTINUE  # past epoch 8: no rung
    t.end()
    # 190 s left, a whole trial takes 210 s: with no rung to reach, a new trial
    # starts because its first epoch fits, and the budget ends it
    assert t.s.first_decision_epochs() == 1 and t.s.new_trial_fits(VALUES)
    assert t.s.budget_refused is False and t.s.refused_why is None
