"""Macro F1, precision and recall as streaming Keras metrics.

They accumulate per-class true/false positives and false negatives over the
whole split (summed across replicas by Keras), so `val_f1` equals
`sklearn.metrics.f1_score(y, p, labels=range(C), average="macro")` on the
same predictions, computed on device (TPU included) in the same pass as the
loss. Classes with no support and no predictions score 0, as in sklearn.
"""

from __future__ import annotations

import keras
from keras import ops

from tuner.data.classes import NUM_CLASSES


@keras.saving.register_keras_serializable(package="flower_tuner")
class MacroScore(keras.metrics.Metric):
    MODES = ("f1", "precision", "recall")

    def __init__(self, mode: str = "f1", num_classes: int = NUM_CLASSES, name: str | None = None, **kwargs):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}")
        super().__init__(name=name or mode, **kwargs)
        self.mode = mode
        self.num_classes = num_classes
        shape = (num_classes,)
        self.tp = self.add_variable(shape=shape, initializer="zeros", name="tp")
        self.fp = self.add_variable(shape=shape, initializer="zeros", name="fp")
        self.fn = self.add_variable(shape=shape, initializer="zeros", name="fn")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # One-hot (possibly smoothed) or sparse labels; argmax predictions.
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.argmax(y_true, axis=-1)
        y_true = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.num_classes)
        y_pred = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes)
        y_pred = ops.reshape(y_pred, (-1, self.num_classes))
        w = 1.0
        if sample_weight is not None:
            # Weight 0 leaves an image out: the padding of a TPU's last
            # validation batch (see FlowerData.eval_dataset).
            w = ops.reshape(ops.cast(sample_weight, y_pred.dtype), (-1, 1))
        self.tp.assign_add(ops.sum(w * y_true * y_pred, axis=0))
        self.fp.assign_add(ops.sum(w * (1.0 - y_true) * y_pred, axis=0))
        self.fn.assign_add(ops.sum(w * y_true * (1.0 - y_pred), axis=0))

    def result(self):
        tp, fp, fn = self.tp, self.fp, self.fn
        if self.mode == "precision":
            num, den = tp, tp + fp
        elif self.mode == "recall":
            num, den = tp, tp + fn
        else:
            num, den = 2.0 * tp, 2.0 * tp + fp + fn
        per_class = ops.where(den > 0, num / ops.maximum(den, 1e-12), 0.0)
        return ops.mean(per_class)

    def reset_state(self):
        for v in (self.tp, self.fp, self.fn):
            v.assign(ops.zeros(v.shape, dtype=v.dtype))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "num_classes": self.num_classes}


def macro_metrics(num_classes: int = NUM_CLASSES) -> list:
    """Metrics compiled into every trial model: logged as accuracy, f1,
    precision, recall (and their val_ twins)."""
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        MacroScore("f1", num_classes),
        MacroScore("precision", num_classes),
        MacroScore("recall", num_classes),
    ]


def compile_metrics(num_classes: int = NUM_CLASSES, padded: bool = False) -> dict[str, list]:
    """`model.compile`'s metric arguments. `padded` (a TPU, whose last
    validation batch is padded with weight-0 blanks): as weighted metrics,
    the only ones Keras hands the sample weights to, so every image counts
    once; their training figures are then class-weighted too where the
    trial uses class weights."""
    return {"weighted_metrics" if padded else "metrics": macro_metrics(num_classes)}
