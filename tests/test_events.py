"""TensorBoard: each trial folder of a finished search is a run that
TensorBoard's own reader finds, with its epoch metrics and its HParams
session (tuner.engine.events)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import event_steps, run_cli

pytestmark = pytest.mark.xdist_group("finished")


def test_every_trial_is_a_tensorboard_run_with_metrics_and_hparams(finished_project):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    from tuner.engine.events import SESSION_START

    for trial in ("trial_0", "trial_1"):
        folder = Path(finished_project) / trial
        acc = EventAccumulator(str(folder))
        acc.Reload()
        with open(folder / "history.csv") as f:
            history = list(csv.DictReader(f))
        for tag in ("val_f1", "val_precision", "val_recall", "loss", "learning_rate"):
            events = acc.Tensors(tag)
            assert [e.step for e in events] == [1, 2], (trial, tag)
            for e, row in zip(events, history):
                value = tensor_util.make_ndarray(e.tensor_proto).item()
                assert value == pytest.approx(float(row[tag]), rel=1e-5), (trial, tag)
        # the trial's score so far and its epoch: HParams shows a run's last value
        f1s = [float(row["val_f1"]) for row in history]
        for tag, want in (("best_val_f1", [max(f1s[:k + 1]) for k in range(len(f1s))]),
                          ("best_epoch", [f1s.index(max(f1s[:k + 1])) + 1 for k in range(len(f1s))])):
            got = [tensor_util.make_ndarray(e.tensor_proto).item() for e in acc.Tensors(tag)]
            assert got == pytest.approx(want, rel=1e-6), (trial, tag)
        content = acc.PluginTagToContent("hparams")[SESSION_START]
        session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        # the dimensions that vary in the tiny space, with this trial's values
        assert set(session.hparams) == {"callback", "learning_rate"}
        assert session.hparams["callback"].string_value in ("none", "reduce_lr_on_plateau")
        assert 1e-3 <= session.hparams["learning_rate"].number_value <= 3e-3
        assert event_steps(folder) == [1, 2]
    # the experiment's summary at the project root names them, the score and its epoch first among the metrics
    acc = EventAccumulator(str(finished_project))
    acc.Reload()
    config = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    assert {h.name for h in config.hparam_infos} == {"callback", "learning_rate"}
    assert [m.name.tag for m in config.metric_infos][:3] == ["best_val_f1", "best_epoch", "val_f1"]


def test_board_on_a_missing_project_is_one_line(tmp_path):
    r = run_cli("board", "--project", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no project at" in r.stderr and len(r.stderr.strip().splitlines()) == 1
