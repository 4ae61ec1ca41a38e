"""The checks of a space file, each failure one `SpaceError` line naming the
file, the key and what is allowed."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError
from tuner.spaces.compare import _fmt
from tuner.spaces.defaults import default_value, train_settings
from tuner.spaces.space import HyperbandConfig, Param, Space, TrainConfig
from tuner.spaces.table import (
    CACHE_VALUES,
    DISTRIBUTIONS,
    EARLY_KEYS,
    GOALS,
    HYPERBAND_KEYS,
    METHODS,
    METRIC_KEYS,
    METRICS,
    PRECISIONS,
    SPEC_KEYS,
    TOP_KEYS,
    TRAIN_KEYS,
    Dimension,
    _num,
    dimensions,
)


def _flag_int(where: str, flag: str, value: Any, lo: int | None) -> None:
    if not _is_int(value) or (lo is not None and value < lo):
        need = "an int" if lo is None else f"an int >= {lo}"
        raise SpaceError(f"{where}: {flag}: {value!r} is not allowed; need {need}")


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
        tr = train_settings(tr)  # what the file leaves out at TrainConfig's defaults

        def tristate(key: str) -> str | bool:
            value = tr[key]
            if isinstance(value, bool):
                return value
            self.choice(value, f"train.{key}", CACHE_VALUES)
            return {"auto": "auto", "true": True, "false": False}[value]

        train = TrainConfig(
            epochs=self.int_(tr["epochs"], "train.epochs", 1),
            steps_per_epoch=self.int_(tr["steps_per_epoch"],
                                      "train.steps_per_epoch", 1, null=True),
            batch_per_replica=self.int_(tr["batch_per_replica"],
                                        "train.batch_per_replica", 1),
            validation_steps=self.int_(tr["validation_steps"],
                                       "train.validation_steps", 1, null=True),
            validate_every=self.auto_or_int(tr["validate_every"], "train.validate_every", 1),
            cache=tristate("cache"),
            jit_compile=tristate("jit_compile"),
            precision=self.choice(tr["precision"], "train.precision", PRECISIONS),
            steps_per_execution=self.auto_or_int(tr["steps_per_execution"],
                                                 "train.steps_per_execution", 1),
        )
        if train.batch_per_replica > 1024:
            raise self.fail("train.batch_per_replica",
                            f"{train.batch_per_replica} is out of range", "expected an int in [1, 1024]")

        hb = self.mapping(doc.get("hyperband"), "hyperband")
        self.keys(hb, HYPERBAND_KEYS, "hyperband.")
        hb = {**HyperbandConfig().to_dict(), **hb}
        hyperband = HyperbandConfig(
            factor=self.int_(hb["factor"], "hyperband.factor", 2),
            iterations=self.int_(hb["iterations"], "hyperband.iterations", 1),
        )

        early = self.early_terminate(doc.get("early_terminate"))
        params = self.parameters(doc.get("parameters"), train)
        start_with = self.start_with(doc.get("start_with"), params)
        space = Space(name=name, description=description.strip(), path=self.path,
                      method=method, objective_name=objective,
                      goal="max" if goal == "maximize" else "min",
                      run_cap=run_cap, seed=seed, data=data, train=train,
                      hyperband=hyperband, params=params, text=text, early_terminate=early,
                      start_with=start_with)
        _check_consistency(space, self.where)
        return space

    def early_terminate(self, raw: Any):
        """W&B's `early_terminate: {type, min_iter, eta, max_iter}`."""
        from tuner.engine.rungs import AUTO, TYPES, EarlyTerminate

        if raw is None:
            return None
        et = self.mapping(raw, "early_terminate")
        self.keys(et, EARLY_KEYS, "early_terminate.")
        if "type" not in et:
            raise self.fail("early_terminate.type", "missing", "choose one of " + ", ".join(TYPES))
        kind = self.choice(et["type"], "early_terminate.type", TYPES)
        if "min_iter" not in et:
            raise self.fail("early_terminate.min_iter", "missing",
                            "expected an int >= 1: the epochs a trial trains before its first decision, "
                            "or auto (hyperband)")
        if et["min_iter"] == AUTO:
            if kind != "hyperband":
                raise self.fail("early_terminate.min_iter", "auto is for type hyperband",
                                "give median an int >= 1")
            min_iter: int | str = AUTO
        else:
            min_iter = self.int_(et["min_iter"], "early_terminate.min_iter", 1)
        return EarlyTerminate(
            type=kind,
            min_iter=min_iter,
            eta=self.int_(et.get("eta", 3), "early_terminate.eta", 2),
            max_iter=self.int_(et.get("max_iter"), "early_terminate.max_iter", 1, null=True),
        )

    def start_with(self, raw: Any, params: dict[str, Param]) -> tuple[dict[str, Any], ...]:
        """`start_with: [{dimension: value, ...}, ...]`: configurations tried
        first. Each value must be one the space can draw: within a range (on
        its step), among a choice, equal to a fixed value."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail("start_with", f"{_typename(raw)}, not a list",
                            "expected a list of mappings of dimension -> value")
        out = []
        for i, conf in enumerate(raw):
            key = f"start_with[{i}]"
            if not isinstance(conf, dict) or not conf:
                raise self.fail(key, f"{_typename(conf)}, not a mapping" if not isinstance(conf, dict)
                                else "empty mapping", "expected dimension: value pairs")
            self.keys(conf, tuple(params), key + ".", noun="parameter")
            out.append({name: self.start_value(params[name], v, f"{key}.{name}") for name, v in conf.items()})
        return tuple(out)

    def start_value(self, p: Param, v: Any, key: str) -> Any:
        dim = dimensions()[p.name]
        v = self.value(dim, v, key)
        if p.kind == "fixed":
            if v != p.value:
                raise self.fail(key, f"{_show(v)} but the space fixes {p.name} at {_show(p.value)}",
                                f"drop it, give {_show(p.value)}, or let {p.name} vary")
        elif p.kind == "choice":
            if v not in (p.values or ()):
                raise self.fail(key, f"{_show(v)} is not among the space's values",
                                "choose one of " + ", ".join(_show(x) for x in p.values or ()))
        else:
            if not p.min <= v <= p.max:
                raise self.fail(key, f"{_num(v)} is outside the space's range",
                                f"expected a value in [{_num(p.min)}, {_num(p.max)}]")
            if p.q is not None:
                k = (v - p.min) / p.q
                if abs(k - round(k)) > 1e-8:
                    raise self.fail(key, f"{_num(v)} is not on the range's step {_num(p.q)}",
                                    f"expected {_num(p.min)} + a multiple of {_num(p.q)}")
        return v

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
            out[name] = Param(name, "fixed", value=default_value(dim, train))
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
    imagenet = "imagenet" in p["weights"].possible()
    for b in p["backbone"].possible():
        bb = BACKBONES.get(b)
        if bb is not None and smallest < bb.min_size:
            raise SpaceError(f"{where}: parameters.image_size: {smallest} px is below "
                             f"{b}'s minimum of {bb.min_size}; use image_size >= "
                             f"{bb.min_size} or another backbone")
        if bb is not None and imagenet and not bb.imagenet:
            raise SpaceError(f"{where}: parameters.weights: {b} has no ImageNet weights; use "
                             f"weights none or a weights file with {b}, or another backbone")
    et = space.early_terminate
    if et is not None:
        if space.method == "hyperband":
            raise SpaceError(f"{where}: early_terminate: cannot be combined with method hyperband "
                             "(Keras Tuner's Hyperband stops trials itself); use method tpe or random, "
                             "or remove early_terminate")
        if p["epochs"].varying:
            # rungs come from train.epochs: trials drawing fewer epochs would
            # leave rung groups that never fill
            raise SpaceError(f"{where}: parameters.epochs: cannot be searched with early_terminate (its rungs "
                             "come from train.epochs); fix it with {value: N} or leave it out and set "
                             "train.epochs, or remove early_terminate")
        most = max(int(e) for e in p["epochs"].possible()) if "epochs" in p else space.train.epochs
        if isinstance(et.min_iter, int) and et.min_iter > most:
            raise SpaceError(f"{where}: early_terminate.min_iter: {et.min_iter} is above the "
                             f"{most} epochs a trial trains; expected an int in [1, {most}]")
        if et.max_iter is not None and isinstance(et.min_iter, int) and et.max_iter < et.min_iter:
            raise SpaceError(f"{where}: early_terminate.max_iter: {et.max_iter} is below min_iter "
                             f"{et.min_iter}; expected an int >= {et.min_iter}")
    if space.start_with and space.method == "hyperband":
        raise SpaceError(f"{where}: start_with: cannot be combined with method hyperband (it draws its "
                         "brackets itself); use method tpe or random, or remove start_with")
    partial = sorted(t for t in p["fine_tune"].possible() if t != "full")
    if partial and set(p["weights"].possible()) == {"none"}:
        raise SpaceError(f"{where}: parameters.fine_tune: {' and '.join(partial)} with weights none "
                         f"would freeze randomly initialised layers; use fine_tune: full to train "
                         f"from scratch, or weights imagenet or a weights file")
    if space.method == "hyperband" and p["epochs"].varying:
        raise SpaceError(f"{where}: parameters.epochs: cannot be searched with method "
                         f"hyperband (it allots epochs itself); fix it and set "
                         f"train.epochs to the most epochs a trial may get")
