"""A validated space: its parameters (`Param`), train and Hyperband settings,
and what a search derives from them (declared values, overrides, fingerprint)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError
from tuner.spaces.compare import fingerprint
from tuner.spaces.table import METHODS, dimensions


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
    #: validate every k epochs (and at each rung and the last); "auto": the
    #: smallest k that keeps validation within 20% (tuner.engine.validation)
    validate_every: str | int = 1
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
    #: configurations tried first, in order: dimension -> value (validated)
    start_with: tuple[dict[str, Any], ...] = ()
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
            **({"start_with": [dict(c) for c in self.start_with]} if self.start_with else {}),
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
        # the validator builds Spaces, so it is imported here, not at the top
        from tuner.spaces.validator import _check_consistency, _flag_int

        where = str(self.path) if self.path else self.name
        train = self.train
        params = dict(self.params)
        changes: dict[str, Any] = {}
        if epochs is not None:
            _flag_int(where, "--epochs", epochs, 1)
            et = self.early_terminate
            if et is not None and isinstance(et.min_iter, int) and et.min_iter > epochs:
                raise SpaceError(f"{where}: --epochs {epochs} is below early_terminate's first rung (min_iter "
                                 f"{et.min_iter}); give --epochs {et.min_iter + 1} or more, or a space without "
                                 "early_terminate")
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
