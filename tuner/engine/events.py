"""TensorBoard event files: each trial folder is a TensorBoard run with its
epoch metrics and the HParams plugin's session summary (its varying values),
so `tensorboard --logdir runs/NAME` (or `python -m tuner board`) shows every
trial in the HParams table, parallel coordinates and scatter views.

An epoch is written once its checkpoint is on disk, and a resumed trial first
reads back which epochs its run already holds, so across kills and resumes
every epoch appears exactly once. The HParams summaries need the
`tensorboard` package (TensorFlow 2.21 no longer installs it); without it
nothing is written and the search says so once.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from tuner.engine import ranking

#: history columns written as scalars, under these tags
TAGS = ("loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall",
        "learning_rate")
SESSION_START = "_hparams_/session_start_info"
#: the epoch the trial's score (`best_<objective>`) was reached at, written each epoch
BEST_EPOCH = "best_epoch"


def best_tag(objective: str) -> str:
    """The tag of a trial's score so far: its best epoch's `objective`."""
    return f"best_{objective}"


def available() -> bool:
    """The tensorboard package, and TensorFlow, whose tf.summary writes the
    files (a JAX machine without TensorFlow writes none, and says so)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return False
    try:
        import tensorboard.plugins.hparams.api  # noqa: F401
    except ImportError:
        return False
    return True


def _hparam_value(v: Any) -> bool | int | float | str:
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def written(folder: str) -> tuple[set[int], bool]:
    """(epochs already in the run's scalars, whether its session start is
    there), read from the event files with TensorFlow's own reader."""
    import tensorflow as tf

    epochs: set[int] = set()
    session = False
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        try:
            for record in tf.data.TFRecordDataset(path):  # summary_iterator's own reading, without its deprecation notice
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if value.tag == "val_f1" or value.tag == "loss":
                        epochs.add(int(event.step))
                    elif value.tag == SESSION_START:
                        session = True
        except tf.errors.DataLossError:  # a file cut by a kill: what was read counts
            continue
    return epochs, session


class TrialEvents:
    """The event files of one trial folder (local projects; a `gs://`
    project's trials write none)."""

    def __init__(self, trial_dir: str, trial_id: str, hparams: dict[str, Any], objective: str = "val_f1",
                 direction: str = "max"):
        self.dir, self.trial_id = trial_dir, trial_id
        self.objective, self.direction = objective, direction
        self.hparams = {k: _hparam_value(v) for k, v in hparams.items()}
        self.enabled = "://" not in trial_dir and available()
        self._writer = None
        self._done: set[int] | None = None
        self._session = False

    def write(self, rows: list[dict[str, Any]], upto: int | None) -> None:
        """Write the epochs of `rows` up to `upto` (the last epoch whose
        checkpoint is on disk) that the run does not hold yet."""
        if not self.enabled or not upto:
            return
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        if self._done is None:
            self._done, self._session = written(self.dir)
        todo = [r for r in rows if r.get("epoch") and int(r["epoch"]) <= upto and int(r["epoch"]) not in self._done]
        if not todo and self._session:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.dir)
        with self._writer.as_default():
            if not self._session:
                hp.hparams(self.hparams, trial_id=f"trial_{self.trial_id}")
                self._session = True
            for r in todo:
                step = int(r["epoch"])
                for tag in TAGS:
                    if r.get(tag) is not None:
                        tf.summary.scalar(tag, float(r[tag]), step=step)
                # The trial's score so far and its epoch: HParams shows a
                # run's last value, which then is the score `best` ranks by.
                best = ranking.best_row([x for x in rows if int(x["epoch"]) <= step], self.objective,
                                        self.direction)
                if best is not None:
                    tf.summary.scalar(best_tag(self.objective), float(best[self.objective]), step=step)
                    tf.summary.scalar(BEST_EPOCH, int(best["epoch"]), step=step)
                self._done.add(step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_config(project: str, names: list[str]) -> None:
    """The experiment's summary at the project root (once): the varying
    dimensions as hyperparameters; among the metrics first the trial's score
    (its best epoch's objective, as `best` ranks) and that epoch, then the
    last epoch's val_f1 and the others."""
    if "://" in project or not available() or glob.glob(os.path.join(project, "events.out.tfevents.*")):
        return
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    from tuner.engine.project import read_meta

    objective = ((read_meta(project) or {}).get("space", {}).get("metric") or {}).get("name", "val_f1")
    tags = (best_tag(objective), BEST_EPOCH, "val_f1", "val_precision", "val_recall", "val_accuracy", "val_loss",
            "loss")
    metrics = [hp.Metric(tag, display_name=tag) for tag in tags]
    writer = tf.summary.create_file_writer(project)
    with writer.as_default():
        hp.hparams_config(hparams=[hp.HParam(n) for n in names], metrics=metrics)
    writer.close()
