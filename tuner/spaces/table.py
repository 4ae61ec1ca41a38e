"""The vocabulary of a space file and the table of its dimensions (type,
allowed values, default): what the validator, the schema and the docs read."""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any

METHODS = ("tpe", "random", "bayes", "hyperband")
METRICS = ("val_f1", "val_loss", "val_accuracy", "val_precision", "val_recall")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("uniform", "log_uniform_values", "int_uniform")
CACHE_VALUES = ("auto", "true", "false")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # as tuner.model.precision

TOP_KEYS = ("name", "description", "method", "metric", "run_cap", "seed",
            "data", "train", "hyperband", "early_terminate", "start_with", "parameters")
TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_per_replica",
              "validation_steps", "validate_every", "cache", "jit_compile", "precision", "steps_per_execution")
HYPERBAND_KEYS = ("factor", "iterations")
EARLY_KEYS = ("type", "min_iter", "eta", "max_iter")
METRIC_KEYS = ("name", "goal")
SPEC_KEYS = ("value", "values", "min", "max", "distribution", "q")

WEIGHT_SUFFIXES = (".h5", ".keras")


@dataclass(frozen=True)
class Dimension:
    """One searchable hyperparameter: its type, what is allowed, its default."""

    name: str
    type: str  # "str" | "int" | "float" | "bool"
    default: Any  # None for epochs / batch_per_replica: taken from `train`
    help: str
    choices: tuple[str, ...] | None = None  # str dimensions
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # (min, ...] instead of [min, ...]
    max_open: bool = False
    #: weights: any other string ending in .h5/.keras is a local file
    paths: bool = False
    #: YAML null is read as the string "none"
    null_is_none: bool = False

    @property
    def allowed(self) -> str:
        """What is allowed, in words (used by error messages and docs)."""
        if self.type == "bool":
            return "true or false"
        if self.type == "str":
            text = "one of " + ", ".join(self.choices or ())
            if self.paths:
                text += " or a path to a " + "/".join(WEIGHT_SUFFIXES) + " weights file"
            return text
        kind = "an int" if self.type == "int" else "a number"
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return (f"{kind} in {'(' if self.min_open else '['}{_num(lo)}, "
                    f"{_num(hi)}{')' if self.max_open else ']'}")
        if lo is not None:
            return f"{kind} {'>' if self.min_open else '>='} {_num(lo)}"
        return kind

    def check(self, value: Any) -> str | None:
        """None when `value` (already of the right type) is allowed, else
        what is wrong with it."""
        if self.type == "str":
            if value in (self.choices or ()):
                return None
            if self.paths and value.endswith(WEIGHT_SUFFIXES):
                return None
            close = difflib.get_close_matches(value, self.choices or (), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            what = "unknown" if not self.paths else "neither a known name nor a weights file"
            return f"{value!r} is {what}{hint}"
        if self.type in ("int", "float"):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{value!r} is not a finite number"
            lo, hi = self.min, self.max
            if lo is not None and (value <= lo if self.min_open else value < lo):
                return f"{_num(value)} is out of range"
            if hi is not None and (value >= hi if self.max_open else value > hi):
                return f"{_num(value)} is out of range"
        return None


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:g}" if x == x else "nan"
    return str(x)


_CORE: tuple[Dimension, ...] = (
    # backbone's choices are filled in from tuner.model.backbones at call time
    Dimension("backbone", "str", "resnet50v2",
              "keras.applications backbone, or smallcnn (see tuner.model.backbones)"),
    Dimension("weights", "str", "imagenet",
              "initial backbone weights: imagenet, none (random) or a local "
              ".h5/.keras weights file", choices=("imagenet", "none"),
              paths=True, null_is_none=True),
    Dimension("fine_tune", "str", "full",
              "which backbone layers train: frozen (head only), full, or the "
              "top fine_tune_blocks blocks; frozen and top need pretrained "
              "weights (a trial that draws them with weights none trains the "
              "full backbone)", choices=("frozen", "full", "top")),
    Dimension("fine_tune_blocks", "int", 3,
              "backbone blocks trained when fine_tune is top", min=1),
    Dimension("bn_momentum", "float", 0.99,
              "momentum of the backbone's BatchNorm moving statistics; 0.9 lets "
              "them catch up in short runs from scratch (Keras' default is 0.99)",
              min=0.0, max=1.0, max_open=True),
    Dimension("batchnorm", "str", "frozen",
              "pretrained backbone BatchNorm layers: frozen (inference mode, "
              "ImageNet statistics kept, Keras' transfer-learning advice) or "
              "train (batch statistics, moving statistics and scale/offset "
              "updated where the backbone trains, as the public notebooks do); "
              "with weights none BatchNorm always trains",
              choices=("frozen", "train")),
    Dimension("dropout", "float", 0.2, "dropout before the classifier",
              min=0.0, max=0.9),
    Dimension("dense_units", "int", 0,
              "units of a hidden dense layer before the classifier (0 = none)",
              min=0),
    Dimension("optimizer", "str", "nadam", "optimizer",
              choices=("nadam", "rmsprop", "adam", "sgd", "adamw")),
    Dimension("learning_rate", "float", 1e-3,
              "initial learning rate (the lr_schedule callback sets its own)",
              min=0.0, max=1.0, min_open=True),
    Dimension("weight_decay", "float", 0.0,
              "weight decay (adamw, sgd)", min=0.0, max=1.0, max_open=True),
    Dimension("callback", "str", "reduce_lr_on_plateau",
              "training callback, as in the original study; linear_decay: the learning rate falls "
              "linearly to the trial's last epoch, its epochs or the last one --max-time holds",
              choices=("early_stopping", "lr_schedule", "reduce_lr_on_plateau", "linear_decay", "none"),
              null_is_none=True),
    Dimension("es_patience", "int", 2, "EarlyStopping patience, in validations (train.validate_every)", min=0),
    Dimension("plateau_patience", "int", 10,
              "ReduceLROnPlateau patience, in validations (train.validate_every)", min=0),
    Dimension("plateau_factor", "float", 0.1, "ReduceLROnPlateau factor",
              min=0.0, max=1.0, min_open=True, max_open=True),
    Dimension("lr_start", "float", 1e-5, "lr_schedule: first learning rate",
              min=0.0, max=1.0, min_open=True),
    Dimension("lr_min", "float", 1e-5, "lr_schedule: learning rate decayed towards",
              min=0.0, max=1.0, min_open=True),
    Dimension("lr_max", "float", 5e-5, "lr_schedule: learning rate after the ramp",
              min=0.0, max=1.0, min_open=True),
    Dimension("lr_rampup_epochs", "int", 5,
              "lr_schedule: epochs of linear ramp from lr_start to lr_max", min=0),
    Dimension("lr_sustain_epochs", "int", 0,
              "lr_schedule: epochs held at lr_max", min=0),
    Dimension("lr_decay", "float", 0.8,
              "lr_schedule: exponential decay per epoch after the sustain",
              min=0.0, max=1.0, min_open=True),
    Dimension("image_size", "int", 192,
              "square input side in pixels (records of another size are resized)",
              min=32, max=1024),
    Dimension("label_smoothing", "float", 0.0, "label smoothing of the loss",
              min=0.0, max=0.5),
    Dimension("class_weight", "str", "none",
              "none or balanced (inverse class frequency, for macro F1)",
              choices=("none", "balanced"), null_is_none=True),
    Dimension("batch_per_replica", "int", None,
              "batch size per replica (default: train.batch_per_replica)",
              min=1, max=1024),
    Dimension("epochs", "int", None, "epochs per trial (default: train.epochs)",
              min=1),
    Dimension("precision", "str", "auto",
              "compute precision (default: train.precision): auto, float32, mixed_float16 or "
              "mixed_bfloat16 (see tuner.model.precision)",
              choices=PRECISIONS),
)


def dimensions() -> dict[str, Dimension]:
    """Every dimension, in declaration order: the core ones, then one per
    augmentation of `tuner.data.augment.AUGMENTATIONS`. Built on each call so that
    backbones registered later are allowed."""
    from tuner.data.augment import AUGMENTATIONS
    from tuner.model.backbones import BACKBONES

    dims: dict[str, Dimension] = {}
    for d in _CORE:
        if d.name == "backbone":
            d = dataclasses.replace(d, choices=tuple(sorted(BACKBONES)))
        dims[d.name] = d
    for spec in AUGMENTATIONS.values():
        if spec.kind == "bool":
            dims[spec.name] = Dimension(spec.name, "bool", bool(spec.default),
                                        f"augmentation: {spec.help}")
        else:
            dims[spec.name] = Dimension(spec.name, "float", float(spec.default),
                                        f"augmentation: {spec.help}",
                                        min=float(spec.min), max=float(spec.max))
    return dims
