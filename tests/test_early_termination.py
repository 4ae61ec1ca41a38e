"""Early termination and the time budget: the oracle in-process (real Keras
Tuner oracles, scripted reports), then real searches on records the tests
write, killed with real signals where it matters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt
import pytest

from conftest import REPO, run_cli, write_space
from test_faults import ENV, FAULTS, history_epochs, retrained_after_save, snapshot, trained_epochs
from tuner.engine.rungs import EarlyTerminate
from tuner.engine.tuner import TUNERS

RandomOracle = TUNERS["random"][1]
KEY = "resnet50v2@32"


def make_oracle(tmp_path, et=("hyperband", 2, 3), epochs=6, trials=9, deadline=None):
    oracle = RandomOracle(objective=kt.Objective("val_f1", "max"), max_trials=trials, seed=1,
                          early_terminate=EarlyTerminate(*et) if et else None, epochs=epochs, deadline=deadline)
    hp = kt.HyperParameters()
    hp.Float("learning_rate", 1e-4, 1e-2)
    hp.Fixed("backbone", "resnet50v2")
    hp.Fixed("image_size", 32)
    oracle.update_space(hp)
    oracle._set_project_dir(str(tmp_path), "proj")
    return oracle


def epoch(oracle, tid, e, f1, seconds=None, kind=None, finished=False):
    """One epoch's report; `kind` as EpochState sends it (0 a later epoch of
    its run, 1 a run's first with its tracing, 2 a run's first in a kept graph)."""
    metrics = {"val_f1": f1}
    if seconds is not None:
        metrics.update({"tuner/epoch_seconds": seconds,
                        "tuner/first_epoch": float(kind if kind is not None else e == 1)})
    if finished:
        metrics["tuner/finished"] = 1.0
    return oracle.update_trial(tid, metrics, step=e).status


def end(oracle, trial):
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_oracle_pauses_promotes_and_stops_through_keras_tuners_statuses(tmp_path):
    oracle = make_oracle(tmp_path)
    t0 = oracle.create_trial("tuner0")
    assert epoch(oracle, t0.trial_id, 1, 0.2) == "RUNNING"
    assert epoch(oracle, t0.trial_id, 2, 0.6) == "IDLE"  # first at rung 1: pause
    end(oracle, t0)
    assert oracle.trials["0"].status == "IDLE" and oracle.trials["0"].score == 0.6
    t1 = oracle.create_trial("tuner0")
    assert epoch(oracle, t1.trial_id, 2, 0.1) == "IDLE"
    end(oracle, t1)
    t2 = oracle.create_trial("tuner0")
    assert epoch(oracle, t2.trial_id, 2, 0.3) == "STOPPED"  # rung full: 0 goes on, 1 and 2 stop
    end(oracle, t2)
    assert oracle.trials["1"].status == "COMPLETED" and oracle.trials["1"].score == 0.1  # counts, scored
    assert oracle.trials["2"].status == "COMPLETED"
    again = oracle.create_trial("tuner0")
    assert again.trial_id == "0" and again.status == "RUNNING"  # continued before any new trial
    assert oracle.end_order == ["1", "2"]


def test_an_epoch_reported_again_replaces_its_first_report(tmp_path):
    oracle = make_oracle(tmp_path, et=None)
    t = oracle.create_trial("tuner0")
    epoch(oracle, t.trial_id, 1, 0.2)
    epoch(oracle, t.trial_id, 2, 0.9)  # lost in a kill before its checkpoint ...
    epoch(oracle, t.trial_id, 2, 0.5)  # ... and trained again
    end(oracle, t)
    assert oracle.trials["0"].score == 0.5  # Keras Tuner alone would say mean(0.9, 0.5) = 0.7


def test_a_budget_that_cannot_fit_a_first_rung_starts_no_trial(tmp_path):
    oracle = make_oracle(tmp_path, deadline=time.monotonic() + 25.0)
    t = oracle.create_trial("tuner0")  # nothing measured yet: start one
    assert t.status == "RUNNING"
    assert epoch(oracle, t.trial_id, 1, 0.2, seconds=20.0) == "RUNNING"  # build, trace and the first epoch
    # A new trial needs 30 s to reach the rung: none can join trial 0 there,
    # so it goes on at once rather than pause.
    assert epoch(oracle, t.trial_id, 2, 0.3, seconds=10.0) == "RUNNING"
    end(oracle, t)
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert oracle.budget_refused and list(oracle.trials) == ["0"]


def test_no_endgame_before_eta_trials_met_at_the_first_rung(tmp_path):
    oracle = make_oracle(tmp_path, deadline=time.monotonic() + 70.0)
    t = oracle.create_trial("tuner0")
    epoch(oracle, t.trial_id, 1, 0.2, seconds=20.0)
    assert epoch(oracle, t.trial_id, 2, 0.3, seconds=10.0) == "IDLE"
    end(oracle, t)
    # 30 s to a new trial's rung + 50 s for trial 0's next rung > 70 s, but
    # one configuration is no search: a second trial starts while it fits
    assert oracle.create_trial("tuner0").trial_id == "1"


def leader_paused_at_rung_2(tmp_path):
    """Three trials met at rung 1 (epoch 2, a new one reaches it in 30 s);
    the best, trial 0, went on and is paused at rung 2 (epoch 6); taking it
    to rung 3 (epoch 18) costs 20 s + 11 x 10 s."""
    oracle = make_oracle(tmp_path, epochs=20, deadline=time.monotonic() + 1000.0)  # rungs 2, 6, 18
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        t = oracle.create_trial("tuner0")
        assert t.trial_id == tid  # plenty of time: explore
        epoch(oracle, tid, 1, f1 / 2, seconds=20.0)
        epoch(oracle, tid, 2, f1, seconds=10.0)
        end(oracle, t)
    t0 = oracle.create_trial("tuner0")
    assert t0.trial_id == "0"  # the rung is full: 0 goes on
    for e in range(3, 7):
        epoch(oracle, "0", e, 0.4, seconds=10.0)  # paused at rung 2 (epoch 6)
    end(oracle, t0)
    return oracle


def test_endgame_continues_the_best_paused_trial_instead_of_exploring(tmp_path):
    oracle = leader_paused_at_rung_2(tmp_path)
    assert oracle.create_trial("tuner0").trial_id == "3"
    failed = oracle.trials["3"]
    failed.status = "FAILED"
    oracle.end_trial(failed)
    # 30 s for a new trial to reach its rung + 20 s + 11 x 10 s to take trial 0
    # from rung 2 (epoch 6) to rung 3 (epoch 18) do not fit in 150 s: continue trial 0 now
    oracle.deadline.at = time.monotonic() + 150.0
    assert oracle.create_trial("tuner0").trial_id == "0"


def test_no_new_trial_that_could_not_be_judged_before_the_budget_ends(tmp_path):
    oracle = leader_paused_at_rung_2(tmp_path)
    # One new trial reaches rung 1 in 30 s and trial 0's next rung takes
    # 130 s: 190 s would hold both, but the new trial would wait at rung 1
    # for two more that do not fit (3 x 30 s + 130 s > 190 s): continue 0.
    oracle.deadline.at = time.monotonic() + 190.0
    assert oracle.create_trial("tuner0").trial_id == "0"


def test_the_leader_arriving_at_a_rung_in_the_endgame_goes_on_without_a_pause(tmp_path):
    """Trial 0 reaches rung 2 (epoch 6) with 150 s left: no new trial could
    be judged and trial 0 taken to rung 3 after it (3 x 30 s + 130 s), so
    the endgame would continue trial 0 at once. It goes on in the same run:
    no pause, no rebuild and restore."""
    oracle = make_oracle(tmp_path, epochs=20, deadline=time.monotonic() + 1000.0)  # rungs 2, 6, 18
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        t = oracle.create_trial("tuner0")
        epoch(oracle, tid, 1, f1 / 2, seconds=20.0)
        epoch(oracle, tid, 2, f1, seconds=10.0)
        end(oracle, t)
    t0 = oracle.create_trial("tuner0")
    assert t0.trial_id == "0"
    for e in range(3, 6):
        epoch(oracle, "0", e, 0.4, seconds=10.0)
    oracle.deadline.at = time.monotonic() + 150.0 + oracle.deadline.tail
    assert epoch(oracle, "0", 6, 0.45, seconds=10.0) == "RUNNING"
    assert oracle.early.state_of("0") == "promoted" and not oracle.early.paused()
    # with time for exploring, the same arrival pauses
    fresh = leader_paused_at_rung_2(tmp_path / "fresh")
    assert fresh.early.state_of("0") == "paused"


def test_a_trial_early_stopping_ended_at_a_rung_takes_no_place_there(tmp_path):
    """EarlyStopping ended trial 0 at the rung's epoch: it trains no further,
    so it is finished there, never paused or promoted (it would train
    nothing and waste the slot); the rung's group is the other trials'."""
    oracle = make_oracle(tmp_path, deadline=time.monotonic() + 1000.0)
    t0 = oracle.create_trial("tuner0")
    epoch(oracle, "0", 1, 0.2, seconds=20.0)
    assert epoch(oracle, "0", 2, 0.9, seconds=10.0, finished=True) == "RUNNING"
    end(oracle, t0)
    assert oracle.trials["0"].status == "COMPLETED" and "0" not in oracle.early.paused()
    for tid in ("1", "2"):
        t = oracle.create_trial("tuner0")
        epoch(oracle, tid, 1, 0.1, seconds=20.0)
        assert epoch(oracle, tid, 2, 0.2 if tid == "1" else 0.1, seconds=10.0) == "IDLE"  # 0 did not count
        end(oracle, t)
    assert oracle.early.paused() == ["1", "2"]
    assert oracle.create_trial("tuner0").trial_id == "3"


def three_at_rung_1_trial_0_promoted(tmp_path):
    """Three trials through rung 1 (epoch 2, first epochs 20 s, later 10 s):
    trial 0 wins it and waits in the queue."""
    oracle = make_oracle(tmp_path, deadline=time.monotonic() + 1000.0)
    for tid, f1 in (("0", 0.3), ("1", 0.1), ("2", 0.2)):
        t = oracle.create_trial("tuner0")
        epoch(oracle, tid, 1, f1 / 2, seconds=20.0)
        epoch(oracle, tid, 2, f1, seconds=10.0)
        end(oracle, t)
    return oracle


def test_a_promoted_trial_whose_next_epoch_does_not_fit_is_not_continued(tmp_path):
    """Trial 0 won rung 1 and waits in the queue; with 5 s left (a 10-s
    epoch), continuing it would end past the budget: the search ends, and
    trial 0 waits for the same command with more time."""
    oracle = three_at_rung_1_trial_0_promoted(tmp_path)
    assert oracle.scheduler.queue == ["0"]
    oracle.deadline.at = time.monotonic() + 5.0 + oracle.deadline.tail
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert oracle.budget_refused and oracle.scheduler.queue == ["0"]


def test_a_trial_at_the_first_rung_is_joined_while_its_group_fits(tmp_path):
    oracle = leader_paused_at_rung_2(tmp_path)
    for tid in ("3", "4"):  # two new trials wait at rung 1
        t = oracle.create_trial("tuner0")
        assert t.trial_id == tid
        epoch(oracle, tid, 1, 0.05, seconds=20.0)
        assert epoch(oracle, tid, 2, 0.1, seconds=10.0) == "IDLE"
        end(oracle, t)
    # the third of their group costs 30 s: with trial 0's 130 s, 170 s fit
    oracle.deadline.at = time.monotonic() + 170.0
    assert oracle.create_trial("tuner0").trial_id == "5"


def test_two_workers_share_one_set_of_rungs(tmp_path):
    oracle = make_oracle(tmp_path, et=("hyperband", 1, 2), epochs=4)
    a = oracle.create_trial("w1")
    b = oracle.create_trial("w2")
    assert epoch(oracle, a.trial_id, 1, 0.5) == "IDLE"
    end(oracle, a)
    assert epoch(oracle, b.trial_id, 1, 0.7) == "RUNNING"  # the pair is complete and b is best
    assert epoch(oracle, b.trial_id, 2, 0.8) == "IDLE"  # first at rung 2, while w1 explores
    end(oracle, b)
    c = oracle.create_trial("w1")
    assert c.trial_id == "2"
    assert oracle.trials["0"].status == "COMPLETED"
    state = oracle.get_state()["flower_tuner"]["early_terminate"]
    assert state["records"] == {"0": {"0": 0.5, "1": 0.7}, "1": {"1": 0.8}}


# ---------------------------------------------------------------- real searches


#: trial 0 draws the learning rate that learns (seed checked in the test)
ET_SPACE = """\
name: et
method: random
run_cap: 2
seed: {seed}
train: {{epochs: 3, steps_per_epoch: 4, batch_per_replica: 8, jit_compile: false}}
early_terminate: {{type: hyperband, min_iter: 1, eta: 2}}
parameters:
  backbone: {{value: resnet50v2}}
  weights: {{value: none}}
  image_size: {{value: 32}}
  optimizer: {{value: adam}}
  learning_rate: {{values: [3.0e-3, 1.0e-9]}}
  callback: {{value: none}}
"""


def et_args(tmp_path, root, seed=3):
    space = write_space(tmp_path / "et.yaml", ET_SPACE.format(seed=seed))
    return ["--space", str(space), "--data", str(root), "--project", str(tmp_path / "proj")]


def early_state(project: Path) -> dict:
    return json.loads((project / "oracle.json").read_text())["flower_tuner"]["early_terminate"]


def lr_of(project: Path, tid: str) -> float:
    return json.loads((project / f"trial_{tid}" / "trial.json").read_text())["hyperparameters"]["values"][
        "learning_rate"]


# also under Keras' JAX backend (issue 21): the same rungs, decisions and resume
# (JAX compiles ResNet50V2 for minutes on 2 shared cores: `make faults` runs that one)
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=[pytest.mark.jax, pytest.mark.slow])])
def test_a_trial_that_cannot_learn_stops_at_the_first_rung_and_the_best_continues(ten_classes, tmp_path, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    args = et_args(tmp_path, ten_classes) + (["--backend", "jax"] if backend == "jax" else [])
    project = tmp_path / "proj"
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lr_of(project, "0") == 3.0e-3  # the seed gives the learner first, so it pauses then goes on
    decisions = early_state(project)["decisions"]
    assert decisions["1"] == {"state": "stopped", "rung": 0, "epoch": 1}, r.stdout
    assert decisions["0"]["state"] == "promoted"
    assert "trial 0 paused" in r.stdout and "trial 0 (1 of 2), resuming after epoch 1" in r.stdout, r.stdout
    assert "trial 1 stopped" in r.stdout
    assert history_epochs(project / "trial_0") == [1, 2, 3]
    assert history_epochs(project / "trial_1") == [1]
    trials = {t: json.loads((project / f"trial_{t}" / "trial.json").read_text()) for t in "01"}
    assert trials["1"]["status"] == "COMPLETED"  # a stopped trial counts, scored by its best epoch
    # the best-epoch file holds the best epoch's weights and optimizer state:
    # Adam's step count there is that epoch's 4 steps each
    import h5py

    with h5py.File(project / "trial_0" / "checkpoint.weights.h5") as f:
        iterations = int(f["optimizer/vars/0"][()])  # Keras 3 stores the step count first
    best = int(json.loads((project / "trial_0" / "resume.json").read_text())["best_epoch"])
    assert iterations == best * 4, (best, iterations)
    assert "time spent: 4 epochs trained" in r.stdout, r.stdout
    st = run_cli("status", "--project", str(project))
    assert "stopped at epoch 1 (rung 1)" in st.stdout, st.stdout
    # the same command again: nothing is trained, no decision changes
    before = snapshot(project)
    again = run_cli("search", "--plain", *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not retrained_after_save(before, again.stdout)
    assert not trained_epochs(again.stdout) and "resuming after" not in again.stdout, again.stdout
    assert early_state(project)["decisions"] == decisions


@pytest.mark.slow  # a kill-point campaign like test_faults' exact kills: `make faults`
def test_a_kill_between_the_rung_report_and_the_pause_gives_the_same_decision_once(ten_classes, tmp_path):
    args = et_args(tmp_path, ten_classes)
    project = tmp_path / "proj"
    killed = subprocess.run([sys.executable, str(FAULTS), "--kill-at", "rung-decision", "--", "search", "--plain",
                             *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert "[faults] SIGKILL at rung-decision (pause trial 0 at epoch 1)" in killed.stdout, killed.stdout
    assert early_state(project)["decisions"]["0"]["state"] == "paused"
    before = snapshot(project)
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not retrained_after_save(before, r.stdout), r.stdout  # trial 0 paused again at once
    state = early_state(project)
    assert state["records"]["0"] == {"0": pytest.approx(state["curves"]["0"]["1"]),
                                     "1": pytest.approx(state["curves"]["1"]["1"])}
    assert history_epochs(project / "trial_0") == [1, 2, 3]
    assert history_epochs(project / "trial_1") == [1]


@pytest.mark.parametrize("block,message", [
    ("{type: asha, min_iter: 1}", "early_terminate.type: 'asha' is not allowed; choose one of hyperband, median"),
    ("{type: hyperband, min_iter: 1, eta: 1}", "early_terminate.eta: 1 is too small; expected an int >= 2"),
    ("{type: hyperband, min_iter: 0}", "early_terminate.min_iter: 0 is too small; expected an int >= 1"),
    ("{type: hyperband, min_iter: 9}", "early_terminate.min_iter: 9 is above the 3 epochs a trial trains"),
    ("{type: hyperband}", "early_terminate.min_iter: missing"),
    ("{type: median, min_iter: 1, patience: 2}", "early_terminate.patience: unknown key"),
    ("{type: median, min_iter: auto}", "early_terminate.min_iter: auto is for type hyperband; give median an int"),
])
def test_a_malformed_early_terminate_is_one_line(tmp_path, block, message):
    from tuner.errors import SpaceError
    from tuner.spaces import load_space

    text = ET_SPACE.format(seed=1).replace("{type: hyperband, min_iter: 1, eta: 2}", block)
    path = write_space(tmp_path / "bad.yaml", text)
    with pytest.raises(SpaceError) as e:
        load_space(str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_early_terminate_with_keras_tuners_hyperband_is_refused_by_the_cli(tmp_path):
    text = ET_SPACE.format(seed=1).replace("method: random", "method: hyperband")
    path = write_space(tmp_path / "hb.yaml", text)
    r = run_cli("search", "--space", str(path), "--data", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "early_terminate: cannot be combined with method hyperband" in r.stderr.strip()
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("epochs", ["{values: [1, 3]}", "{min: 1, max: 3}"])
def test_a_searched_epochs_with_early_terminate_is_refused_in_one_line(tmp_path, epochs):
    """Rungs come from train.epochs: trials drawing fewer epochs would leave
    rung groups that never fill, so the validator refuses the combination."""
    from tuner.errors import SpaceError
    from tuner.spaces import load_space, parse_space

    text = ET_SPACE.format(seed=1) + f"  epochs: {epochs}\n"
    path = write_space(tmp_path / "epochs.yaml", text)
    with pytest.raises(SpaceError) as e:
        load_space(str(path))
    line = str(e.value)
    assert line.startswith(f"{path}: parameters.epochs: ") and "\n" not in line
    assert "early_terminate" in line and "value:" in line and "train.epochs" in line
    parse_space(text.replace(f"  epochs: {epochs}\n", "  epochs: {value: 2}\n"))  # a fixed one is fine
    parse_space(text.replace("early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n", ""))  # so is no rung

    r = run_cli("search", "--space", str(path))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {line}"], r.stderr


def test_a_trial_cut_by_max_time_counts_in_best_by_its_finished_epochs(tmp_path):
    """The budget often ends inside the best trial: its saved best epoch is
    the search's result, not something to leave out."""
    from tuner.engine import project as proj
    from tuner.engine.checkpoint import history_csv
    from tuner.results.trials import best_trials, load_trials
    from tuner.spaces import load_space

    project = tmp_path / "p"
    proj.write_meta(str(project), {"space": load_space("demo").to_dict(), "space_text": "", "data": "x"})
    for tid, status, f1s in (("00", "RUNNING", [0.1, 0.4]), ("01", "COMPLETED", [0.2]), ("02", "RUNNING", [])):
        d = project / f"trial_{tid}"
        d.mkdir()
        (d / "trial.json").write_text(json.dumps({"trial_id": tid, "status": status,
                                                 "hyperparameters": {"values": {}}}))
        (d / "history.csv").write_text(history_csv([{"epoch": i + 1, "val_f1": f} for i, f in enumerate(f1s)]))
    meta, trials = load_trials(str(project))
    assert [t.state for t in trials] == ["interrupted", "completed", "pending"]
    assert [(t.trial_id, t.best_epoch) for t in best_trials(meta, trials, 3)] == [("00", 2), ("01", 1)]


@pytest.mark.slow  # two real runs: `make faults`
def test_a_saved_early_stopping_decision_is_honoured_on_resume(ten_classes, tmp_path):
    """EarlyStopping fired at the epoch a kill followed: the resume trains
    nothing more (its decision is in resume.json, `stop_training`)."""
    space = write_space(tmp_path / "es.yaml", ET_SPACE.format(seed=3).replace(
        "early_terminate: {type: hyperband, min_iter: 1, eta: 2}\n", ""))
    project = tmp_path / "proj"
    args = ["--space", str(space), "--data", str(ten_classes), "--project", str(project), "--max-trials", "1"]
    killed = subprocess.run([sys.executable, str(FAULTS), "--kill-at", "save", "--", "search", "--plain", *args],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert "[faults] SIGKILL at save (epoch 1" in killed.stdout, killed.stdout + killed.stderr
    pointer = project / "trial_0" / "resume.json"
    state = json.loads(pointer.read_text())
    assert state["stop_training"] is False  # recorded at every epoch
    state["stop_training"] = True  # as if EarlyStopping had fired at epoch 1
    pointer.write_text(json.dumps(state))
    r = run_cli("search", "--plain", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " epoch 2/3" not in r.stdout, r.stdout
    assert history_epochs(project / "trial_0") == [1]
    assert json.loads((project / "trial_0" / "trial.json").read_text())["status"] == "COMPLETED"


def test_on_one_machine_a_graph_kept_traced_costs_no_tracing_again(tmp_path):
    """Trial 0 paused at its last rung with 15 s left: continuing it in the
    model the tuner keeps traced is a 12-s first epoch (its restore and the
    caches' refill, as trials 1 and 2 measured), not the 20-s first epoch of
    a fresh build, so on one machine it goes on; a chief (which cannot know
    where a run lands), or a tuner that no longer keeps that graph, counts
    it cold and ends the search."""
    for local, goes_on in ((True, True), (False, False)):
        oracle = make_oracle(tmp_path / str(local), epochs=8, deadline=time.monotonic() + 1000.0)  # rungs 2, 6
        oracle.is_warm = (lambda values: True) if local else None
        for tid in ("0", "1", "2"):
            t = oracle.create_trial("tuner0")
            epoch(oracle, tid, 1, 0.1, seconds=20.0 if tid == "0" else 12.0, kind=1 if tid == "0" else 2)
            epoch(oracle, tid, 2, 0.3 if tid == "0" else 0.1, seconds=10.0)
            end(oracle, t)
        t0 = oracle.create_trial("tuner0")
        assert t0.trial_id == "0"
        for e in range(3, 7):
            epoch(oracle, "0", e, 0.4, seconds=10.0)  # paused at rung 2 (epoch 6)
        end(oracle, t0)
        oracle.deadline.at = time.monotonic() + 15.0 + oracle.deadline.tail
        nxt = oracle.create_trial("tuner0")
        assert (nxt.status == "RUNNING" and nxt.trial_id == "0") == goes_on, (local, nxt.status, nxt.trial_id)


def test_an_oracle_json_written_before_the_scheduler_resumes_its_promoted_trial(tmp_path):
    """The old oracle kept the promoted trial in Keras Tuner's retry queue
    and no queue of its own: a resumed search continues it first."""
    oracle = three_at_rung_1_trial_0_promoted(tmp_path)
    state = json.loads(json.dumps(oracle.get_state()))
    del state["flower_tuner"]["queue"]
    state["retry_queue"] = ["0"]  # as the old code wrote it
    resumed = make_oracle(tmp_path)
    resumed.trials = oracle.trials
    resumed.set_state(state)
    assert resumed._retry_queue == []  # noqa: SLF001 - the scheduler's queue is the only one
    again = resumed.create_trial("tuner0")
    assert again.trial_id == "0" and again.status == "RUNNING"
