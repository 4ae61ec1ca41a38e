"""The chief's oracle in-process: its lock, idle workers' leases, and the
space it starts from. Real Keras Tuner oracles and tuners, no gRPC."""

from __future__ import annotations

import threading
import time

import keras_tuner as kt
import pytest
from keras_tuner.src.distribute import oracle_chief

from conftest import tiny_space
from tuner.engine.tuner import TUNERS
from tuner.model.hypermodel import FlowerHyperModel
from tuner.model.strategy import detect
from tuner.spaces import load_space

#: the oracle a random search's chief runs
RandomOracle = TUNERS["random"][1]


def make_oracle(tmp_path, cls=RandomOracle, lease: float = 300.0, trials: int = 3):
    oracle = cls(objective=kt.Objective("val_f1", "max"), max_trials=trials, seed=1, lease_seconds=lease)
    hp = kt.HyperParameters()
    hp.Float("learning_rate", 1e-3, 3e-3)
    oracle.update_space(hp)
    oracle._set_project_dir(str(tmp_path), "proj")
    return oracle


def in_thread(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    t.join(timeout=1.0)
    return t


class FullDiskOnce(RandomOracle):
    """The first trial file cannot be written (a full disk)."""

    failed = False

    def _save_trial(self, trial):
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        super()._save_trial(trial)


def test_an_oracle_call_that_raises_releases_the_lock(tmp_path):
    oracle = make_oracle(tmp_path, FullDiskOnce)
    with pytest.raises(OSError):
        oracle.create_trial("w1")
    # Keras Tuner's exit check, the lease monitor and another worker's call
    # each come from another thread: none may wait on a lock left held.
    for call, args in ((oracle_chief.exit_chief, (oracle,)), (oracle.expire_leases, ()),
                       (oracle.create_trial, ("w2",))):
        assert not in_thread(call, *args).is_alive(), f"{call.__name__} blocked on the oracle's lock"
    assert oracle.ongoing_trials["w2"].status == "RUNNING"


def test_a_vanished_idle_worker_does_not_keep_the_chief(tmp_path):
    oracle = make_oracle(tmp_path, lease=5.0, trials=1)
    trial = oracle.create_trial("w1")
    assert oracle.create_trial("w2").status == "IDLE"  # waits in case trial 0 comes back
    # w2 vanishes; w1 finishes the last trial and is told to stop
    oracle.update_trial(trial.trial_id, {"val_f1": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert oracle.create_trial("w1").status == "STOPPED"
    oracle.expire_leases(now=time.time() + 2.0)
    assert not oracle_chief.exit_chief(oracle)  # within the lease w2 may still ask again
    oracle.expire_leases(now=time.time() + 6.0)
    assert oracle_chief.exit_chief(oracle), oracle.tuner_ids


def test_the_chief_declares_the_space_without_building_a_model(tmp_path, monkeypatch):
    # As `tuner.search` starts a chief on a fresh project: weights it cannot
    # load (a missing file; ImageNet offline fails the same way) and no data.
    for k, v in {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
                 "KERASTUNER_ORACLE_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    space = load_space(tiny_space(tmp_path)).with_overrides(weights=str(tmp_path / "missing.h5"))

    def no_data(size: int):
        raise AssertionError("the chief read data")

    tuner_cls, oracle_cls = TUNERS["random"]
    oracle = oracle_cls(objective=kt.Objective("val_f1", "max"), max_trials=2, seed=1)
    tuner_cls(oracle=oracle, hypermodel=FlowerHyperModel(space, no_data, detect("cpu", None), seed=1),
              directory=str(tmp_path), project_name="proj", progress=None, stopper=None)
    assert sorted(p.name for p in oracle.hyperparameters.space) == sorted(space.params)
    assert oracle.create_trial("w1").hyperparameters.values["weights"] == str(tmp_path / "missing.h5")


def test_a_late_end_from_a_worker_that_lost_its_trial_leaves_the_finished_result(tmp_path):
    """w1's lease ran out, w2 continued and completed trial 0; w1 wakes up,
    fails on files that moved on and ends the trial FAILED: the completed
    result stands (Keras Tuner's EndTrial names no worker)."""
    oracle = make_oracle(tmp_path, lease=10.0)
    t = oracle.create_trial("w1")
    oracle.expire_leases(now=time.time() + 60.0)
    again = oracle.create_trial("w2")
    assert again.trial_id == t.trial_id
    oracle.update_trial(t.trial_id, {"val_f1": 0.5}, step=1)
    again.status = "COMPLETED"
    oracle.end_trial(again)
    late = kt.engine.trial.Trial(hyperparameters=t.hyperparameters.copy(), trial_id=t.trial_id, status="FAILED")
    oracle.end_trial(late)
    assert oracle.trials[t.trial_id].status == "COMPLETED" and oracle.trials[t.trial_id].score == 0.5
