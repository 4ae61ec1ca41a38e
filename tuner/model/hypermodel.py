"""The flower HyperModel: a keras.applications backbone with its own
preprocessing inside the model (so saved models take raw 0..255 images), a
small head, and a `fit` that picks batch size, callbacks and datasets per
trial from the hyperparameters."""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from tuner.model import backbones
from tuner.errors import TunerError
from tuner.data.classes import NUM_CLASSES
from tuner.model.metrics import compile_metrics
from tuner.spaces import with_defaults

#: ImageNet means/stds the applications' preprocess_input functions use.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def preprocess_layers(mode: str) -> list[keras.layers.Layer]:
    """Each application's `preprocess_input` as plain built-in layers, so a
    saved model reloads with no custom objects and serves raw pixels."""
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if mode == "torch":
        var = [s * s * 255.0 * 255.0 for s in _TORCH_STD]
        mean = [m * 255.0 for m in _TORCH_MEAN]
        return [keras.layers.Normalization(mean=mean, variance=var, name="preprocess")]
    if mode == "caffe":
        # RGB -> BGR and mean subtraction in one fixed 3x3 linear map.
        return [keras.layers.Dense(3, trainable=False, name="preprocess")]
    return []


def _init_caffe(layer: keras.layers.Layer) -> None:
    kernel = np.zeros((3, 3), "float32")
    kernel[0, 2] = kernel[1, 1] = kernel[2, 0] = 1.0
    layer.set_weights([kernel, -np.array(_CAFFE_MEAN_BGR, "float32")])


_BLOCK_RE = re.compile(r"^(.*?block_?\d+[a-z]?)_")


def freeze_batchnorm(backbone: keras.Model) -> None:
    """Put every BatchNormalization in inference mode: in Keras 3 a
    non-trainable BatchNormalization uses (and keeps) its moving statistics
    even when the model trains, and its scale/offset stay fixed."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def unfreeze_top_blocks(backbone: keras.Model, n: int, train_bn: bool = False) -> None:
    """Train the last `n` blocks (and the layers after them); everything else
    stays frozen, and so does every BatchNormalization unless `train_bn`."""
    blocks: list[str] = []
    for layer in backbone.layers:
        m = _BLOCK_RE.match(layer.name)
        if m and m.group(1) not in blocks:
            blocks.append(m.group(1))
    keep = set(blocks[-n:]) if n > 0 else set()
    first = None
    for i, layer in enumerate(backbone.layers):
        m = _BLOCK_RE.match(layer.name)
        if m and m.group(1) in keep and first is None:
            first = i
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = first is not None and i >= first
    if not train_bn:
        freeze_batchnorm(backbone)


def make_optimizer(name: str, learning_rate: float, weight_decay: float = 0.0):
    if name == "nadam":
        return keras.optimizers.Nadam(learning_rate)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=weight_decay or None)
    if name == "adamw":
        # 0 means none, not Keras' default of 0.004
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    raise TunerError(f"unknown optimizer {name!r}; choose nadam, rmsprop, adam, sgd or adamw")


def ramp_schedule(start: float, minimum: float, maximum: float, rampup: int, sustain: int, decay: float) -> Callable[[int], float]:
    """The original study's `exponential_lr`: linear ramp, hold, exponential decay."""

    def lr(epoch: int) -> float:
        if epoch < rampup:
            return (maximum - start) / rampup * epoch + start
        if epoch < rampup + sustain:
            return maximum
        return (maximum - minimum) * decay ** (epoch - rampup - sustain) + minimum

    return lr


def resolve_weights(weights: str) -> str | None:
    if weights in ("none", None, ""):
        return None
    if weights == "imagenet":
        return "imagenet"
    path = os.path.expanduser(weights)
    if not os.path.exists(path) and not path.startswith("gs://"):
        raise TunerError(
            f"weights file {weights} not found; give an existing .h5 file (notop), 'imagenet' or 'none'"
        )
    return path


def build_backbone(spec: backbones.Backbone, weights: str | None, size: int, asked: str = "") -> keras.Model:
    """The application without its top, built once, with weights=None
    whatever the weights (so a checkpoint reloads into the same layers with
    weights none, and Keras builds some applications differently for
    "imagenet": see `Backbone.imagenet_rescale`), then loaded with
    `weights`; ImageNet's file comes from Keras' cache (tuner.model.weights)."""
    from tuner.model.weights import imagenet_file

    ctor = spec.build_fn()
    shape = (size, size, 3)
    backbone = ctor(include_top=False, weights=None, input_shape=shape, pooling="avg")
    if weights is None:
        return backbone
    try:
        if weights == "imagenet":
            try:
                backbone.load_weights(imagenet_file(spec, size))
            except KeyError:  # a registered application with no known file: Keras' own build fetches it
                source = ctor(include_top=False, weights="imagenet", input_shape=shape, pooling="avg")
                backbone.set_weights(source.get_weights())
                del source
        else:
            backbone.load_weights(weights)
    except Exception as e:  # download or file problems surface as many types
        if weights == "imagenet":
            raise TunerError(
                f"ImageNet weights for {spec.name} could not be had ({str(e).splitlines()[0][:120]}); "
                "connect to the internet once, copy the file into ~/.keras/models, or use --weights none / a local file"
            ) from None
        raise TunerError(f"cannot load weights {asked or weights} into {spec.name}: "
                         f"{str(e).splitlines()[0][:160]}") from None
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Normalization)]
    if spec.imagenet_rescale:
        # Keras' ImageNet build divides the stem Normalization's output by
        # sqrt(std) once more (its file stores std as the variance):
        # (y - mean) / sqrt(var) / sqrt(std) == (y - mean) / sqrt(var * std).
        # A local file is read as Keras' own ImageNet file.
        norm = norms[0]
        norm.adapt_variance.assign(norm.adapt_variance.numpy() * np.array(_TORCH_STD, "float32"))
    for layer in norms:
        layer.finalize_state()  # set_weights/assign leave its cached constants stale
    return backbone


class FlowerHyperModel(kt.HyperModel):
    """Builds one trial's model from a validated `Space`."""

    def __init__(self, space, data_factory: Callable[[int], Any], strategy_info, seed: int = 42):
        super().__init__(name="flower")
        self.space = space
        self.data_factory = data_factory  # image_size -> FlowerData
        self.strategy_info = strategy_info
        self.seed = seed
        self._device = None  # tuner.model.precision.Device, read on the first build

    # Keras Tuner calls this once to populate the oracle's space.
    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.space.declare(hp)

    def values(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """Every dimension's value for this trial (declared ones from hp; the
        table's defaults for any a space of an older project lacks)."""
        out = {}
        for name, param in self.space.params.items():
            out[name] = hp.values[name] if name in hp.values else param.declare(hp)
        return with_defaults(out, self.space.train)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        v = self.values(hp)
        from tuner.model.strategy import steps_per_execution

        train = self.space.train
        return build_model(v, jit_compile=train.jit_compile, num_classes=self.num_classes(int(v["image_size"])),
                           precision=self.precision(v)[0],
                           steps_per_execution=steps_per_execution(train.steps_per_execution,
                                                                   self.strategy_info.kind, self.steps_per_epoch(v)),
                           padded_eval=self.padded_eval)

    @property
    def padded_eval(self) -> bool:
        """A TPU compiles one shape: its last validation batch is padded, and
        the model's metrics must then take the padding's zero weights. So
        under JAX's DataParallel, whose batches must split evenly over the
        devices."""
        return self.strategy_info.kind == "tpu" or getattr(self.strategy_info, "distribution", None) is not None

    def precision(self, v: dict[str, Any]) -> tuple[str, str]:
        """(Keras dtype policy, why) for a trial's values (`values`) on this machine."""
        from tuner.model.precision import choose, this_device

        if self._device is None:
            self._device = this_device(self.strategy_info.kind)
        return choose(v["precision"], self._device)

    def num_classes(self, image_size: int) -> int:
        """The data's class count (the chief, which has no data, never builds)."""
        return self.data_factory(image_size).num_classes

    def global_batch(self, v: dict[str, Any]) -> int:
        """Per-replica batch x replicas, for a trial's values (`values`)."""
        return int(v["batch_per_replica"]) * self.strategy_info.replicas

    def steps_per_epoch(self, v: dict[str, Any]) -> int:
        """`train.steps_per_epoch`, else one pass over train at the trial's
        batch (the build needs it too: steps_per_execution divides it)."""
        steps = self.space.train.steps_per_epoch
        return steps or max(1, self.data_factory(int(v["image_size"])).count("train") // self.global_batch(v))

    def datasets(self, hp, initial_epoch: int = 0):
        """(data, train, val) for one trial. The shuffle and augmentation seed
        depends on the trial and the epoch training starts at, so the epochs
        after a resume do not replay epoch 1's order and draws; val keeps
        only the batches that are scored, in RAM as `train.cache` allows."""
        v = self.values(hp)
        train = self.space.train
        data = self.data_factory(int(v["image_size"]))
        batch = self.global_batch(v)
        k = train.validation_steps
        cache_train, cache_val = data.cache_splits(train.cache, k * batch if k else None)
        # seeded by the global batch, not the per-replica one: a trial on N devices
        # reads the batches it would read on one device at the same global batch
        # (on one device the two are equal: the seed is what it always was)
        seeded = {**hp.values, "batch_per_replica": batch} if "batch_per_replica" in hp.values else hp.values
        train_ds = train_dataset(data, v, batch, cache_train, pipeline_seed(self.seed, seeded, initial_epoch))
        return data, train_ds, data.val_dataset(batch, cache=cache_val, steps=k, static=self.padded_eval)

    def fit(self, hp, model, *args, callbacks=None, initial_epoch: int = 0, epochs=None, watched=None,
            rungs: list[int] | None = None, **kwargs):
        """Train one trial: datasets at its image size, global batch =
        per-replica batch x replicas, its callback first in the list (so the
        tuner's checkpoint callback sees the state after it). `watched`
        receives the trial's own callbacks, whose state a resume restores."""
        v = self.values(hp)
        epochs = int(epochs or v["epochs"])
        _, train_ds, val_ds = self.datasets(hp, initial_epoch)
        steps = self.steps_per_epoch(v)
        own = trial_callbacks(v, epochs)
        if watched is not None:
            watched.extend(own)
        at = self.validation_epochs(v, epochs, rungs)
        with warnings.catch_warnings():
            if len(at) < epochs:
                # ReduceLROnPlateau and EarlyStopping warn at every epoch
                # without validation; they count patience in validations.
                warnings.filterwarnings("ignore", message=r"(Early stopping|Learning rate reduction is) "
                                        r"conditioned on metric `val_")
            # val_ds already stops after `validation_steps` batches: read to its
            # end, its cache completes (Keras would stop one batch short of that).
            return model.fit(
                train_ds,
                validation_data=val_ds,
                validation_freq=1 if len(at) == epochs else at,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=own + list(callbacks or []),
                verbose=0,
                shuffle=False,  # the pipeline shuffles (Keras would warn that it ignores its own)
            )

    def validation_every(self, v: dict[str, Any]) -> int:
        """`train.validate_every` as k for a trial's values (`values`):
        `auto` from its images trained per epoch and the val images scored
        (tuner.engine.validation)."""
        from tuner.engine import validation

        train = self.space.train
        setting = getattr(train, "validate_every", 1)
        if setting != "auto":
            return max(1, int(setting))
        return validation.auto_every(train.epochs, self.rungs(), *self.validation_images(v),
                                     cost=self.validation_cost(v))

    def validation_cost(self, v: dict[str, Any]) -> float:
        """A validation image's cost in training images, by how much of the
        backbone trains (weights none trains it all: see `build_model`)."""
        from tuner.engine import validation

        tuned = v.get("fine_tune", "full") if v.get("weights", "none") not in ("none", None) else "full"
        return validation.VAL_COSTS.get(tuned, validation.VAL_COST)

    def validation_share(self, v: dict[str, Any]) -> float:
        """A validation's estimated cost as a share of an epoch's training
        (the budget's estimate until one is timed: tuner.engine.pace)."""
        val, train = self.validation_images(v)
        return self.validation_cost(v) * val / train if train else 1.0

    def validation_images(self, v: dict[str, Any]) -> tuple[int, int]:
        """(val images scored per validation, images trained per epoch)."""
        batch = self.global_batch(v)
        val = self.data_factory(int(v["image_size"])).count("val")
        k = self.space.train.validation_steps
        return (min(val, k * batch) if k else val), self.steps_per_epoch(v) * batch

    def rungs(self) -> list[int]:
        """The early-termination rungs' epochs, as the oracle sets them."""
        et = self.space.early_terminate
        return et.rungs(self.space.train.epochs) if et is not None else []

    def validation_epochs(self, v: dict[str, Any], epochs: int, rungs: list[int] | None = None) -> list[int]:
        """The 1-based epochs of a run to `epochs` that validate: a function
        of the epoch alone, so a resumed trial validates the same ones.
        `rungs`: the oracle's rungs as it decides them now (None at a worker,
        whose oracle is the chief's: the planned ones, which hold any the
        chief decides, as `min_iter: auto` keeps its rungs or drops them)."""
        from tuner.engine import validation

        rungs = self.rungs() if rungs is None else rungs
        return validation.validation_epochs(epochs, self.validation_every(v), rungs)


def train_dataset(data, v: dict[str, Any], batch: int, cache: bool | str, seed: int,
                  splits: tuple[str, ...] = ("train",)):
    """The training pipeline for one trial's values, for the search and the
    refit alike (so a refit trains as the trial did): its augmentation and,
    with `class_weight: balanced`, each image weighted by its class's
    balanced weight over `splits`."""
    from tuner.data.augment import build_augment

    weights = data.class_weights(splits) if v.get("class_weight") == "balanced" else None
    return data.train_dataset(batch, augment=build_augment(v), cache=cache, seed=seed, sample_weights=weights,
                              splits=splits)


def pipeline_seed(seed: int, trial: Any, initial_epoch: int) -> int:
    """A tf.data seed from the search seed, the trial (its hyperparameter
    values, unique per trial in Keras Tuner) and the epoch training starts at."""
    text = json.dumps([seed, trial, initial_epoch], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def trial_callbacks(v: dict[str, Any], epochs: int | None = None) -> list[keras.callbacks.Callback]:
    """The trial's own callback; what `v` lacks (a trial saved before a
    dimension existed) is at the table's default, as in the search.
    `epochs`: the run's last epoch (`linear_decay` decays to it)."""
    v = with_defaults(v)
    cb = v["callback"]
    if cb == "linear_decay":
        from tuner.model.schedules import LinearDecay

        return [LinearDecay(float(v["learning_rate"]), int(epochs or v.get("epochs") or 1))]
    if cb == "early_stopping":
        return [keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=int(v["es_patience"]))]
    if cb == "reduce_lr_on_plateau":
        return [keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=float(v["plateau_factor"]), patience=int(v["plateau_patience"]),
            min_delta=1e-4)]
    if cb == "lr_schedule":
        fn = ramp_schedule(float(v["lr_start"]), float(v["lr_min"]), float(v["lr_max"]),
                           int(v["lr_rampup_epochs"]), int(v["lr_sustain_epochs"]), float(v["lr_decay"]))
        return [keras.callbacks.LearningRateScheduler(fn)]
    return []


def build_model(v: dict[str, Any], jit_compile: str | bool = "auto", num_classes: int = NUM_CLASSES,
                precision: str = "float32", steps_per_execution: int = 1, padded_eval: bool = False) -> keras.Model:
    """The classifier for one set of dimension values (called inside the
    strategy's scope by the tuner); `num_classes` is the data's
    (`FlowerData.num_classes`), 104 for Kaggle's flowers. `precision` is a
    Keras dtype policy (`tuner.model.precision.choose`); the classifier's
    softmax stays float32 in every policy, and exports build in float32
    (the variables are float32 under mixed policies, so weights load across).
    `padded_eval`: validation batches carry weights (a TPU's padded last batch)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return _build_model(v, jit_compile, num_classes, steps_per_execution, padded_eval)
    finally:
        keras.config.set_dtype_policy(previous)


def _build_model(v: dict[str, Any], jit_compile: str | bool, num_classes: int,
                 steps_per_execution: int, padded_eval: bool = False) -> keras.Model:
    v = with_defaults(v)  # a trial saved before a dimension existed builds as the search would today
    spec = backbones.get(v["backbone"])
    size = int(v["image_size"])
    if size < spec.min_size:
        raise TunerError(f"{spec.name} needs image_size >= {spec.min_size}, got {size}")
    weights = resolve_weights(v["weights"])
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    pre = preprocess_layers(spec.preprocess)
    for layer in pre:
        x = layer(x)
    if spec.preprocess == "caffe":
        _init_caffe(pre[0])
    backbone = build_backbone(spec, weights, size, v["weights"])
    pretrained = weights is not None
    # Nothing pretrained to keep: a search that draws fine_tune top/frozen with
    # weights none (the space validator rejects it when weights is fixed none)
    # trains the whole backbone, and its BatchNorm learns.
    fine_tune = v["fine_tune"] if pretrained else "full"
    train_bn = not pretrained or v["batchnorm"] == "train"
    momentum = float(v["bn_momentum"])
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    if fine_tune == "frozen":
        backbone.trainable = False
    elif fine_tune == "top":
        unfreeze_top_blocks(backbone, int(v["fine_tune_blocks"]), train_bn=train_bn)
    elif not train_bn:
        freeze_batchnorm(backbone)
    # No `training=False` here: Keras 3 replaces it with the outer call's
    # training flag (keras-team/keras#20285). A BatchNormalization runs in
    # inference mode exactly when it is not trainable.
    x = backbone(x)
    dropout = float(v["dropout"])
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    units = int(v["dense_units"])
    if units > 0:
        x = keras.layers.Dense(units, activation="relu", name="head_dense")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="head_dropout2")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="flower")(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name}_flowers")
    model.compile(
        optimizer=make_optimizer(v["optimizer"], float(v["learning_rate"]), float(v["weight_decay"])),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(v["label_smoothing"])),
        **compile_metrics(num_classes, padded=padded_eval),
        # JAX has no graph mode without XLA: jit_compile false would run every op eagerly
        jit_compile=True if keras.backend.backend() == "jax" else jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def _download_problem(error: Exception) -> str:
    """'URL fetch failure on https://.../x.h5: ...' -> 'no connection for x.h5'."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    m = re.search(r"https?://\S+?/([^/\s:]+\.h5)", text)
    if m:
        return f"no connection for {m.group(1)}" if "fetch failure" in text.lower() else f"{m.group(1)}: {text[:80]}"
    return text[:120]


def check_weights_available(space) -> None:
    """Fail before the first trial, once, if ImageNet weights cannot be had:
    each file is looked up in Keras' cache (and downloaded once when it is
    not there), no model is built."""
    from tuner.model.weights import imagenet_file

    w = space.params["weights"]
    values = w.values if w.kind == "choice" else [w.value]
    b = space.params["backbone"]
    names = b.values if b.kind == "choice" else [b.value]
    s = space.params["image_size"]
    sizes = s.values if s.kind == "choice" else [s.value] if s.kind == "fixed" else [s.max]
    for weights in values:
        if weights in ("none", None):
            continue
        if weights != "imagenet":
            resolve_weights(weights)
            continue
        for name in names:
            spec = backbones.get(name)
            for size in sorted({max(spec.min_size, int(x)) for x in sizes}):
                try:
                    imagenet_file(spec, size)
                except KeyError:
                    continue  # no known file: the first build fetches it, and says so if it cannot
                except Exception as e:
                    raise TunerError(
                        f"ImageNet weights for {name} could not be downloaded ({_download_problem(e)}); "
                        "connect to the internet once, copy that file into ~/.keras/models, "
                        "or run with --weights none or --weights PATH"
                    ) from None
