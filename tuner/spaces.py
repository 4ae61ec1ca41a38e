"""Search-space files: what a search varies, in W&B sweep vocabulary.

A space is a YAML file (the shipped ones live in ``search_spaces/``)::

    name: default
    method: bayes                 # random | bayes | hyperband
    metric: {name: val_f1, goal: maximize}
    run_cap: 20                   # trials
    train: {epochs: 90, steps_per_epoch: 10, batch_per_replica: 16}
    parameters:
      optimizer:     {values: [nadam, rmsprop, adam]}          # choice
      learning_rate: {min: 1.0e-5, max: 1.0e-3,
                      distribution: log_uniform_values}        # range
      image_size:    {value: 192}                              # fixed
      weights:       imagenet                                  # fixed (bare)

`load_space` validates the whole file up front, before anything slow runs:
every problem is one `SpaceError` line naming the file, the key and what is
allowed. The resulting `Space` carries *every* dimension of `DIMENSIONS`
(the ones a file leaves out are fixed at their defaults), so a hypermodel can
rely on finding each name in the values `Space.declare` returns.

Importing this module imports neither TensorFlow nor Keras Tuner:
`Param.declare` imports keras_tuner only when called.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError

#: The shipped spaces (``<repo>/search_spaces``).
def _shipped_dir() -> Path:
    """The repo's search_spaces/ in a checkout or editable install; a wheel
    installs them under <prefix>/share/flower-tuner/search_spaces."""
    import sys

    here = Path(__file__).resolve().parent.parent / "search_spaces"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "flower-tuner" / "search_spaces"


SHIPPED_DIR = _shipped_dir()

METHODS = ("random", "bayes", "hyperband")
METRICS = ("val_f1", "val_loss", "val_accuracy", "val_precision", "val_recall")
GOALS = ("maximize", "minimize")
DISTRIBUTIONS = ("uniform", "log_uniform_values", "int_uniform")
CACHE_VALUES = ("auto", "true", "false")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")  # as tuner.model.precision

TOP_KEYS = ("name", "description", "method", "metric", "run_cap", "seed",
            "data", "train", "hyperband", "early_terminate", "parameters")
TRAIN_KEYS = ("epochs", "steps_per_epoch", "batch_per_replica",
              "validation_steps", "cache", "jit_compile", "precision", "steps_per_execution")
HYPERBAND_KEYS = ("factor", "iterations")
EARLY_KEYS = ("type", "min_iter", "eta", "max_iter")
METRIC_KEYS = ("name", "goal")
SPEC_KEYS = ("value", "values", "min", "max", "distribution", "q")

#: Keys of `Space.to_dict` that only label a space: ignored by the
#: fingerprint and by `diff` (renaming or re-describing is not a change).
LABEL_KEYS = ("name", "description")

WEIGHT_SUFFIXES = (".h5", ".keras")


# ------------------------------------------------------------------ dimensions


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
              "keras.applications backbone (see tuner.model.backbones)"),
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
              "training callback, as in the original study",
              choices=("early_stopping", "lr_schedule", "reduce_lr_on_plateau", "none"),
              null_is_none=True),
    Dimension("es_patience", "int", 2, "EarlyStopping patience (epochs)", min=0),
    Dimension("plateau_patience", "int", 10,
              "ReduceLROnPlateau patience (epochs)", min=0),
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


def __getattr__(name: str) -> Any:
    # DIMENSIONS is computed on access (PEP 562): it needs the backbone
    # registry and the augmentation metadata, which may still be growing.
    if name == "DIMENSIONS":
        return dimensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Param:
    """One dimension of a space: fixed, a choice, or a range."""

    name: str
    kind: str  # "fixed" | "choice" | "range"
    value: Any = None
    values: tuple[Any, ...] | None = None
    min: float | int | None = None
    max: float | int | None = None
    distribution: str | None = None  # range: uniform | log_uniform_values | int_uniform
    q: float | int | None = None  # range: step

    @property
    def varying(self) -> bool:
        return self.kind != "fixed"

    def possible(self) -> tuple[Any, ...]:
        """Fixed/choice: every value; range: its two bounds."""
        if self.kind == "fixed":
            return (self.value,)
        if self.kind == "choice":
            return tuple(self.values or ())
        return (self.min, self.max)

    def declare(self, hp: Any) -> Any:
        """Declare on a `keras_tuner.HyperParameters`; returns the value.

        Fixed -> `hp.Fixed`; a choice of exactly true and false ->
        `hp.Boolean` (Keras Tuner's `Choice` turns bools into 0/1); other
        choices -> `hp.Choice` (unordered for strings and bools); ranges ->
        `hp.Float` / `hp.Int` with sampling "linear" or "log" and step `q`.
        """
        if self.kind == "fixed":
            return hp.Fixed(self.name, self.value)
        if self.kind == "choice":
            values = list(self.values or ())
            if all(isinstance(v, bool) for v in values):
                if len(values) == 2:
                    return bool(hp.Boolean(self.name, default=values[0]))
                return hp.Fixed(self.name, values[0])  # never: len 1 is fixed
            ordered = None if isinstance(values[0], (int, float)) else False
            return hp.Choice(self.name, values, ordered=ordered)
        sampling = "log" if self.distribution == "log_uniform_values" else "linear"
        if isinstance(self.min, int) and isinstance(self.max, int):  # int dimension
            return hp.Int(self.name, int(self.min), int(self.max),
                          step=None if self.q is None else int(self.q),
                          sampling=sampling)
        return hp.Float(self.name, float(self.min), float(self.max),
                        step=self.q, sampling=sampling)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "fixed":
            return {"value": self.value}
        if self.kind == "choice":
            return {"values": list(self.values or ())}
        d: dict[str, Any] = {"min": self.min, "max": self.max,
                             "distribution": self.distribution}
        if self.q is not None:
            d["q"] = self.q
        return d


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    steps_per_epoch: int | None = None  # None: one full pass over train
    batch_per_replica: int = 16
    validation_steps: int | None = None  # None: the whole validation split
    cache: str | bool = "auto"  # "auto", True or False
    #: XLA: "auto" is Keras' choice; compiling costs tens of seconds per trial
    #: on a CPU, which dominates very short trials.
    jit_compile: str | bool = "auto"
    #: Keras dtype policy, or "auto" for the device's best (tuner.model.precision)
    precision: str = "auto"
    #: training steps per call into the device (Keras' steps_per_execution);
    #: "auto": many on a TPU, one elsewhere (tuner.model.strategy)
    steps_per_execution: str | int = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HyperbandConfig:
    factor: int = 3
    iterations: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    path: Path | None
    method: str
    objective_name: str
    goal: str  # "max" | "min" (Keras Tuner's Objective direction)
    run_cap: int
    seed: int
    data: str | None  # None, "demo" or a path string (as written)
    train: TrainConfig
    hyperband: HyperbandConfig
    #: every dimension of DIMENSIONS, in its order; left-out ones fixed
    params: dict[str, Param]
    text: str = ""
    #: W&B's `early_terminate` (tuner.engine.rungs.EarlyTerminate) or None
    early_terminate: Any = None
    varying: tuple[str, ...] = field(init=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "varying",
                           tuple(n for n, p in self.params.items() if p.varying))
        object.__setattr__(self, "fingerprint", fingerprint(self.to_dict()))

    # ------------------------------------------------------------------ views

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able content (defaults filled in). Whitespace and
        comments of the file leave it unchanged."""
        return {
            "name": self.name,
            "description": self.description,
            "method": self.method,
            "metric": {"name": self.objective_name,
                       "goal": "maximize" if self.goal == "max" else "minimize"},
            "run_cap": self.run_cap,
            "seed": self.seed,
            "data": self.data,
            "train": self.train.to_dict(),
            "hyperband": self.hyperband.to_dict(),
            "parameters": {n: p.to_dict() for n, p in self.params.items()},
            # only when set, so projects begun before the key existed still match
            **({"early_terminate": self.early_terminate.to_dict()} if self.early_terminate else {}),
        }

    def defaults(self) -> dict[str, Any]:
        """One value per dimension without a tuner: fixed values, the first
        value of each choice, the lower bound of each range."""
        return {n: p.possible()[0] for n, p in self.params.items()}

    def declare(self, hp: Any) -> dict[str, Any]:
        """Declare every parameter on a `keras_tuner.HyperParameters`;
        returns name -> value (bools as bools, floats as floats)."""
        return self.coerce({n: p.declare(hp) for n, p in self.params.items()})

    def coerce(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` (e.g. `hp.values` or a trial's saved values) with each
        known dimension converted to its type (Keras Tuner may hand back 0/1
        for bools, ints for float choices); unknown keys (Keras Tuner's own
        ``tuner/epochs`` ...) are kept as they are."""
        dims = dimensions()
        out: dict[str, Any] = {}
        for k, v in values.items():
            d = dims.get(k)
            if d is not None and v is not None:
                if d.type == "bool":
                    v = bool(v)
                elif d.type == "float":
                    v = float(v)
                elif d.type == "int":
                    v = int(round(v))
            out[k] = v
        return out

    def with_overrides(self, epochs: int | None = None,
                       steps_per_epoch: int | None = None,
                       method: str | None = None, run_cap: int | None = None,
                       seed: int | None = None,
                       weights: str | None = None) -> Space:
        """A copy with command-line flags applied (None: keep the file's).

        `epochs` sets train.epochs and fixes the `epochs` parameter;
        `steps_per_epoch` 0 means a full pass over train (null in the file);
        `weights` fixes the `weights` parameter. The fingerprint is that of
        the result."""
        where = str(self.path) if self.path else self.name
        train = self.train
        params = dict(self.params)
        changes: dict[str, Any] = {}
        if epochs is not None:
            _flag_int(where, "--epochs", epochs, 1)
            train = dataclasses.replace(train, epochs=epochs)
            params["epochs"] = Param("epochs", "fixed", value=epochs)
        if steps_per_epoch is not None:
            _flag_int(where, "--steps-per-epoch", steps_per_epoch, 0)
            train = dataclasses.replace(train, steps_per_epoch=steps_per_epoch or None)
        if method is not None:
            if method not in METHODS:
                raise SpaceError(f"{where}: --method: {method!r} is unknown; "
                                 f"choose one of {', '.join(METHODS)}")
            changes["method"] = method
        if run_cap is not None:
            _flag_int(where, "--run-cap", run_cap, 1)
            changes["run_cap"] = run_cap
        if seed is not None:
            _flag_int(where, "--seed", seed, None)
            changes["seed"] = seed
        if weights is not None:
            dim = dimensions()["weights"]
            problem = dim.check(weights) if isinstance(weights, str) else "not a string"
            if problem:
                raise SpaceError(f"{where}: --weights: {problem}; allowed: {dim.allowed}")
            params["weights"] = Param("weights", "fixed", value=weights)
        new = dataclasses.replace(self, train=train, params=params, **changes)
        _check_consistency(new, where)
        return new


def _flag_int(where: str, flag: str, value: Any, lo: int | None) -> None:
    if not _is_int(value) or (lo is not None and value < lo):
        need = "an int" if lo is None else f"an int >= {lo}"
        raise SpaceError(f"{where}: {flag}: {value!r} is not allowed; need {need}")


# ------------------------------------------------------------ fingerprint/diff


def _canonical(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in LABEL_KEYS}


def fingerprint(d: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a `Space.to_dict`, labels left out."""
    blob = json.dumps(_canonical(d), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


_ABSENT = object()


def _fmt(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two `Space.to_dict` outputs, one line per
    change (``parameters.learning_rate.max: 0.001 -> 0.01``). Labels (name,
    description) are not compared: `diff` is empty exactly when the
    fingerprints are equal."""
    lines: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            if path.startswith("parameters.") and path.count(".") == 1:
                # a spec: report a change of kind (value -> values) as one line
                if _spec_kind(a) != _spec_kind(b):
                    lines.append(f"{path}: {_fmt(a)} -> {_fmt(b)}")
                    return
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{path}.{k}" if path else k)
            return
        if a is _ABSENT or b is _ABSENT or _norm(a) != _norm(b):
            lines.append(f"{path}: {_fmt(a)} -> {_fmt(b)}")

    walk(_canonical(old), _canonical(new), "")
    return lines


def _spec_kind(d: dict[str, Any]) -> str:
    return "fixed" if "value" in d else "choice" if "values" in d else "range"


def _norm(v: Any) -> Any:
    return json.dumps(v, sort_keys=True)


# ------------------------------------------------------------------ resolving


def _shipped() -> dict[str, Path]:
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def list_spaces() -> list[tuple[str, str]]:
    """(name, description) of each shipped space, sorted by name."""
    out = []
    for name, path in sorted(_shipped().items()):
        try:
            doc = _read_yaml(path, path.read_text(encoding="utf-8"))
            desc = doc.get("description", "") if isinstance(doc, dict) else ""
        except (OSError, SpaceError) as e:
            desc = f"(unreadable: {e})"
        out.append((name, str(desc or "")))
    return out


def resolve(name_or_path: str | Path) -> Path:
    """An existing file, or the name of a shipped space."""
    text = str(name_or_path)
    p = Path(text).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise SpaceError(f"{text}: is a directory; give a .yaml file or a space name")
    shipped = _shipped()
    if text in shipped:
        return shipped[text]
    names = ", ".join(sorted(shipped)) or "(none shipped)"
    if "/" in text or "\\" in text or text.endswith((".yaml", ".yml")):
        raise SpaceError(f"{text}: no such file; give a path to a .yaml file or "
                         f"one of the shipped spaces: {names}")
    close = difflib.get_close_matches(text, list(shipped), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpaceError(f"unknown space {text!r}{hint}: choose one of {names} "
                     f"or give a path to a .yaml file")


# -------------------------------------------------------------------- parsing


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that rejects duplicate keys and reads YAML 1.2 floats
        such as 1e-5 (YAML 1.1 reads them as strings)."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                dup = key in seen
                seen.add(key)
            except TypeError:
                continue
            if dup:
                m = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", m)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                           construct_mapping)
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                      |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                      |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*
                      |[-+]?\.(?:inf|Inf|INF)
                      |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _read_yaml(path: Path, text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(x) for x in (e.problem, e.context) if x)
        what = " ".join(what.split())
        raise SpaceError(f"{path}: {where}invalid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        # PyYAML's constructors fail this way on explicit tags (`!!int abc`).
        raise SpaceError(f"{path}: invalid YAML value: {' '.join(str(e).split()) or type(e).__name__}; "
                         "remove the !!tag or fix the value") from None


def load_space(name_or_path: str | Path) -> Space:
    """Read and validate a space file (a path or a shipped name)."""
    path = resolve(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read: {e}") from None
    return parse_space(text, path)


def parse_space(text: str, path: Path | str | None = None) -> Space:
    """Validate the YAML `text` of a space; `path` only names it in errors."""
    p = Path(path) if path is not None else None
    where = str(p) if p is not None else "<space>"
    doc = _read_yaml(where, text)  # type: ignore[arg-type]
    try:
        return _Validator(where, p).space(doc, text)
    except RecursionError:
        raise SpaceError(f"{where}: a YAML alias refers to itself (e.g. &a [*a]); write the value out") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, int):
        return "an int"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else _fmt(v)


class _Validator:
    def __init__(self, where: str, path: Path | None) -> None:
        self.where = where
        self.path = path

    def fail(self, key: str, what: str, allowed: str | None = None) -> SpaceError:
        msg = f"{self.where}: {key}: {what}" if key else f"{self.where}: {what}"
        if allowed:
            msg += f"; {allowed}"
        return SpaceError(" ".join(msg.split()))

    def keys(self, d: dict[str, Any], allowed: tuple[str, ...], prefix: str,
             noun: str = "key") -> None:
        for k in d:
            if not isinstance(k, str):
                raise self.fail(prefix.rstrip(".") or "", f"key {_show(k)} is not a string")
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(f"{prefix}{k}", f"unknown {noun}{hint}",
                                "allowed: " + ", ".join(allowed))

    def mapping(self, v: Any, key: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(key, f"{_typename(v)}, not a mapping", "expected a mapping")
        return v

    def int_(self, v: Any, key: str, lo: int | None = None, null: bool = False) -> Any:
        if v is None and null:
            return None
        if not _is_int(v) or (lo is not None and v < lo):
            need = "an int" + (f" >= {lo}" if lo is not None else "") + (" or null" if null else "")
            what = f"{_show(v)} is {_typename(v)}" if not _is_int(v) else f"{v} is too small"
            raise self.fail(key, what, f"expected {need}")
        return v

    def auto_or_int(self, v: Any, key: str, lo: int) -> str | int:
        if v == "auto":
            return v
        if not _is_int(v) or v < lo:
            raise self.fail(key, f"{_show(v)} is {'too small' if _is_int(v) else _typename(v)}",
                            f"expected auto or an int >= {lo}")
        return v

    def choice(self, v: Any, key: str, allowed: tuple[str, ...]) -> str:
        if not isinstance(v, str) or v not in allowed:
            close = (difflib.get_close_matches(v, allowed, n=1)
                     if isinstance(v, str) else [])
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(key, f"{_show(v)} is not allowed{hint}",
                            "choose one of " + ", ".join(allowed))
        return v

    # -------------------------------------------------------------- top level

    def space(self, doc: Any, text: str) -> Space:
        if doc is None:
            raise self.fail("", "the file is empty",
                            "expected a mapping with at least `parameters`")
        if not isinstance(doc, dict):
            raise self.fail("", f"the file holds {_typename(doc)}, not a mapping",
                            "expected keys such as method, metric, train, parameters")
        self.keys(doc, TOP_KEYS, "")

        stem = self.path.stem if self.path is not None else "space"
        name = doc.get("name", stem)
        if not isinstance(name, str) or not name.strip():
            raise self.fail("name", f"{_show(name)} is not a name", "expected a non-empty string")
        description = doc.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            raise self.fail("description", f"{_typename(description)}", "expected a string")

        method = self.choice(doc.get("method", "bayes"), "method", METHODS)

        metric = self.mapping(doc.get("metric"), "metric")
        self.keys(metric, METRIC_KEYS, "metric.")
        objective = self.choice(metric.get("name", "val_f1"), "metric.name", METRICS)
        natural = "minimize" if objective == "val_loss" else "maximize"
        goal = self.choice(metric.get("goal", natural), "metric.goal", GOALS)
        if goal != natural:
            raise self.fail("metric.goal", f"{objective} must be {natural}d, not {goal}d",
                            f"use goal: {natural}")

        run_cap = self.int_(doc.get("run_cap", 10), "run_cap", 1)
        seed = self.int_(doc.get("seed", 42), "seed")
        data = doc.get("data")
        if data is not None and (not isinstance(data, str) or not data.strip()):
            raise self.fail("data", f"{_show(data)} is {_typename(data)}",
                            "expected demo or a path to the data root")

        tr = self.mapping(doc.get("train"), "train")
        self.keys(tr, TRAIN_KEYS, "train.")
        def tristate(key: str) -> str | bool:
            value = tr.get(key, "auto")
            if isinstance(value, bool):
                return value
            self.choice(value, f"train.{key}", CACHE_VALUES)
            return {"auto": "auto", "true": True, "false": False}[value]

        train = TrainConfig(
            epochs=self.int_(tr.get("epochs", 10), "train.epochs", 1),
            steps_per_epoch=self.int_(tr.get("steps_per_epoch"),
                                      "train.steps_per_epoch", 1, null=True),
            batch_per_replica=self.int_(tr.get("batch_per_replica", 16),
                                        "train.batch_per_replica", 1),
            validation_steps=self.int_(tr.get("validation_steps"),
                                       "train.validation_steps", 1, null=True),
            cache=tristate("cache"),
            jit_compile=tristate("jit_compile"),
            precision=self.choice(tr.get("precision", "auto"), "train.precision", PRECISIONS),
            steps_per_execution=self.auto_or_int(tr.get("steps_per_execution", "auto"),
                                                 "train.steps_per_execution", 1),
        )
        if train.batch_per_replica > 1024:
            raise self.fail("train.batch_per_replica",
                            f"{train.batch_per_replica} is out of range", "expected an int in [1, 1024]")

        hb = self.mapping(doc.get("hyperband"), "hyperband")
        self.keys(hb, HYPERBAND_KEYS, "hyperband.")
        hyperband = HyperbandConfig(
            factor=self.int_(hb.get("factor", 3), "hyperband.factor", 2),
            iterations=self.int_(hb.get("iterations", 1), "hyperband.iterations", 1),
        )

        early = self.early_terminate(doc.get("early_terminate"))
        params = self.parameters(doc.get("parameters"), train)
        space = Space(name=name, description=description.strip(), path=self.path,
                      method=method, objective_name=objective,
                      goal="max" if goal == "maximize" else "min",
                      run_cap=run_cap, seed=seed, data=data, train=train,
                      hyperband=hyperband, params=params, text=text, early_terminate=early)
        _check_consistency(space, self.where)
        return space

    def early_terminate(self, raw: Any):
        """W&B's `early_terminate: {type, min_iter, eta, max_iter}`."""
        from tuner.engine.rungs import TYPES, EarlyTerminate

        if raw is None:
            return None
        et = self.mapping(raw, "early_terminate")
        self.keys(et, EARLY_KEYS, "early_terminate.")
        if "type" not in et:
            raise self.fail("early_terminate.type", "missing", "choose one of " + ", ".join(TYPES))
        kind = self.choice(et["type"], "early_terminate.type", TYPES)
        if "min_iter" not in et:
            raise self.fail("early_terminate.min_iter", "missing",
                            "expected an int >= 1: the epochs a trial trains before its first decision")
        return EarlyTerminate(
            type=kind,
            min_iter=self.int_(et["min_iter"], "early_terminate.min_iter", 1),
            eta=self.int_(et.get("eta", 3), "early_terminate.eta", 2),
            max_iter=self.int_(et.get("max_iter"), "early_terminate.max_iter", 1, null=True),
        )

    # ------------------------------------------------------------- parameters

    def parameters(self, raw: Any, train: TrainConfig) -> dict[str, Param]:
        raw = self.mapping(raw, "parameters")
        dims = dimensions()
        self.keys(raw, tuple(dims), "parameters.", noun="parameter")
        out: dict[str, Param] = {}
        for name, dim in dims.items():
            if name in raw:
                out[name] = self.param(dim, raw[name], f"parameters.{name}")
                continue
            default = dim.default
            if name == "epochs":
                default = train.epochs
            elif name == "batch_per_replica":
                default = train.batch_per_replica
            elif name == "precision":
                default = train.precision
            out[name] = Param(name, "fixed", value=default)
        return out

    def value(self, dim: Dimension, v: Any, key: str) -> Any:
        """Type-check and range-check one value of `dim`; returns it converted."""
        if v is None and dim.null_is_none:
            v = "none"
        t = dim.type
        ok = ((t == "str" and isinstance(v, str)) or (t == "bool" and isinstance(v, bool))
              or (t == "int" and _is_int(v)) or (t == "float" and _is_number(v)))
        if not ok:
            need = {"str": "a string", "bool": "true or false", "int": "an int",
                    "float": "a number"}[t]
            raise self.fail(key, f"{_show(v)} is {_typename(v)}, not {need}",
                            f"allowed: {dim.allowed}")
        if t == "float":
            v = float(v)
        problem = dim.check(v)
        if problem:
            raise self.fail(key, problem, f"allowed: {dim.allowed}")
        return v

    def param(self, dim: Dimension, spec: Any, key: str) -> Param:
        if not isinstance(spec, dict):
            if isinstance(spec, list):
                raise self.fail(key, "a bare list", "write {values: [...]} for a choice")
            return Param(dim.name, "fixed", value=self.value(dim, spec, key))
        if not spec:
            raise self.fail(key, "empty spec",
                            "give one of {value: x}, {values: [..]} or {min: a, max: b}")
        self.keys(spec, SPEC_KEYS, key + ".")
        forms = [f for f in ("value", "values") if f in spec]
        if "min" in spec or "max" in spec or "distribution" in spec or "q" in spec:
            forms.append("min/max")
        if len(forms) > 1:
            raise self.fail(key, f"both {' and '.join(forms)} given",
                            "a spec is exactly one of {value: x}, {values: [..]} "
                            "or {min: a, max: b[, distribution, q]}")
        if "value" in spec:
            return Param(dim.name, "fixed", value=self.value(dim, spec["value"], key + ".value"))
        if "values" in spec:
            return self.choice_param(dim, spec["values"], key + ".values")
        return self.range_param(dim, spec, key)

    def choice_param(self, dim: Dimension, vals: Any, key: str) -> Param:
        if not isinstance(vals, list):
            raise self.fail(key, f"{_typename(vals)}, not a list", "expected a non-empty list")
        if not vals:
            raise self.fail(key, "empty list",
                            f"give at least one value ({dim.allowed})")
        # null reads as "none" where allowed; ints and floats are both numbers
        kinds = {("a string" if v is None and dim.null_is_none else
                  "a number" if _is_number(v) else _typename(v)) for v in vals}
        if len(kinds) > 1:
            raise self.fail(key, "values mix types (" + ", ".join(sorted(kinds)) + ")",
                            f"all values must be {dim.allowed}")
        out = [self.value(dim, v, f"{key}[{i}]") for i, v in enumerate(vals)]
        for i, v in enumerate(out):
            if v in out[:i]:
                raise self.fail(f"{key}[{i}]", f"{_show(v)} is listed twice",
                                "values must be distinct")
        if len(out) == 1:
            return Param(dim.name, "fixed", value=out[0])
        return Param(dim.name, "choice", values=tuple(out))

    def range_param(self, dim: Dimension, spec: dict[str, Any], key: str) -> Param:
        if dim.type in ("str", "bool"):
            raise self.fail(key, f"{dim.name} is {'a string' if dim.type == 'str' else 'true/false'}"
                            " and cannot be a range", "use {values: [..]}")
        for b in ("min", "max"):
            if b not in spec:
                raise self.fail(key, f"{b} is missing",
                                "a range needs both min and max (or use {value: x})")
        lo = self.value(dim, spec["min"], key + ".min")
        hi = self.value(dim, spec["max"], key + ".max")
        natural = "int_uniform" if dim.type == "int" else "uniform"
        dist = spec.get("distribution", natural)
        self.choice(dist, key + ".distribution", DISTRIBUTIONS)
        if dim.type == "int" and dist == "uniform":
            raise self.fail(key + ".distribution", f"{dim.name} is an int",
                            "use int_uniform or log_uniform_values")
        if dim.type == "float" and dist == "int_uniform":
            raise self.fail(key + ".distribution", f"{dim.name} is a float",
                            "use uniform or log_uniform_values")
        if lo == hi:
            raise self.fail(key, f"min equals max ({_num(lo)})",
                            f"use {{value: {_num(lo)}}} for a fixed value")
        if lo > hi:
            raise self.fail(key + ".min", f"min {_num(lo)} is greater than max {_num(hi)}",
                            "min must be < max")
        if dist == "log_uniform_values" and lo <= 0:
            raise self.fail(key + ".min", f"{_num(lo)} is not > 0",
                            "log_uniform_values needs min > 0")
        q = spec.get("q")
        if q is not None:
            if dist == "log_uniform_values":
                raise self.fail(key + ".q", "a step is not supported with log_uniform_values",
                                "drop q or use a {values: [..]} choice")
            if dim.type == "int":
                if not _is_int(q) or q < 1:
                    raise self.fail(key + ".q", f"{_show(q)} is not allowed",
                                    "expected an int >= 1")
            elif not _is_number(q) or not q > 0 or not math.isfinite(q):
                raise self.fail(key + ".q", f"{_show(q)} is not allowed", "expected a number > 0")
            elif q > hi - lo:
                raise self.fail(key + ".q", f"step {_num(q)} is larger than max - min",
                                f"expected a step <= {_num(hi - lo)}")
            else:
                q = float(q)
        return Param(dim.name, "range", min=lo, max=hi, distribution=dist, q=q)


def _check_consistency(space: Space, where: str) -> None:
    """Checks across dimensions, shared by `load_space` and `with_overrides`."""
    from tuner.model.backbones import BACKBONES

    p = space.params
    smallest = min(p["image_size"].possible())
    for b in p["backbone"].possible():
        bb = BACKBONES.get(b)
        if bb is not None and smallest < bb.min_size:
            raise SpaceError(f"{where}: parameters.image_size: {smallest} px is below "
                             f"{b}'s minimum of {bb.min_size}; use image_size >= "
                             f"{bb.min_size} or another backbone")
    et = space.early_terminate
    if et is not None:
        if space.method == "hyperband":
            raise SpaceError(f"{where}: early_terminate: cannot be combined with method hyperband "
                             "(Keras Tuner's Hyperband stops trials itself); use method random or bayes, "
                             "or remove early_terminate")
        most = max(int(e) for e in p["epochs"].possible()) if "epochs" in p else space.train.epochs
        if et.min_iter > most:
            raise SpaceError(f"{where}: early_terminate.min_iter: {et.min_iter} is above the "
                             f"{most} epochs a trial trains; expected an int in [1, {most}]")
        if et.max_iter is not None and et.max_iter < et.min_iter:
            raise SpaceError(f"{where}: early_terminate.max_iter: {et.max_iter} is below min_iter "
                             f"{et.min_iter}; expected an int >= {et.min_iter}")
    partial = sorted(t for t in p["fine_tune"].possible() if t != "full")
    if partial and set(p["weights"].possible()) == {"none"}:
        raise SpaceError(f"{where}: parameters.fine_tune: {' and '.join(partial)} with weights none "
                         f"would freeze randomly initialised layers; use fine_tune: full to train "
                         f"from scratch, or weights imagenet or a weights file")
    if space.method == "hyperband" and p["epochs"].varying:
        raise SpaceError(f"{where}: parameters.epochs: cannot be searched with method "
                         f"hyperband (it allots epochs itself); fix it and set "
                         f"train.epochs to the most epochs a trial may get")
