"""The space-file format as a JSON Schema, for editors (VS Code's YAML
extension, JupyterLab): key completion, the help of each dimension on hover,
typos flagged as they are typed.

It is generated from the tables `tuner.spaces` validates with (the keys, the
dimensions with their types, ranges and choices), so it cannot drift from
them; `python -m tuner spaces --schema` prints it and the package ships it as
`tuner/space.schema.json`, which the shipped spaces reference. The schema
says what one key may hold; the validator also checks what keys say about
each other (min below max, a rung within the epochs, no log range from 0)
and words every error in one line, so it stays the authority.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("space.schema.json")
SCHEMA_ID = "https://github.com/flower-tuner/flower-tuner/space.schema.json"


def _int(lo: int | None = None, null: bool = False, **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"type": ["integer", "null"] if null else "integer", **extra}
    if lo is not None:
        s["minimum"] = lo
    return s


def _value(dim) -> dict[str, Any]:
    """What one value of a dimension may be."""
    from tuner.spaces import WEIGHT_SUFFIXES

    if dim.type == "bool":
        s: dict[str, Any] = {"type": "boolean"}
    elif dim.type == "str":
        s = {"enum": list(dim.choices or ())}
        if dim.paths:
            ends = "|".join(x.lstrip(".").replace(".", "\\.") for x in WEIGHT_SUFFIXES)
            s = {"anyOf": [s, {"type": "string", "pattern": f"\\.({ends})$"}]}
    else:
        s = {"type": "integer" if dim.type == "int" else "number"}
        if dim.min is not None:
            s["exclusiveMinimum" if dim.min_open else "minimum"] = dim.min
        if dim.max is not None:
            s["exclusiveMaximum" if dim.max_open else "maximum"] = dim.max
    if dim.null_is_none:
        s = {"anyOf": [s, {"type": "null"}]}
    return s


def _spec(dim) -> dict[str, Any]:
    """A dimension's entry under `parameters`: a value, {value}, {values} or a range."""
    from tuner.spaces import DISTRIBUTIONS

    v = _value(dim)
    forms: list[dict[str, Any]] = [
        v,
        {"type": "object", "additionalProperties": False, "required": ["value"], "properties": {"value": v}},
        {"type": "object", "additionalProperties": False, "required": ["values"],
         "properties": {"values": {"type": "array", "minItems": 1, "items": v}}},
    ]
    if dim.type in ("int", "float"):
        dists = [d for d in DISTRIBUTIONS if d != ("uniform" if dim.type == "int" else "int_uniform")]
        forms.append({"type": "object", "additionalProperties": False, "required": ["min", "max"],
                      "properties": {"min": v, "max": v, "distribution": {"enum": dists},
                                     "q": {"type": "number", "exclusiveMinimum": 0}}})
    default = f" (default: {dim.default})" if dim.default is not None else ""
    return {"description": dim.help + default, "anyOf": forms}


def space_schema() -> dict[str, Any]:
    from tuner.engine.rungs import TYPES
    from tuner.spaces import CACHE_VALUES, GOALS, METHODS, METRICS, PRECISIONS, dimensions

    tristate = {"anyOf": [{"type": "boolean"}, {"enum": list(CACHE_VALUES)}]}
    closed = {"type": "object", "additionalProperties": False}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "flower-tuner search space",
        "description": "A search space for `python -m tuner search --space FILE` (W&B sweep vocabulary).",
        **closed,
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the space's name (default: the file's)"},
            "description": {"type": ["string", "null"]},
            "method": {"enum": list(METHODS), "description": "search method (default: bayes)"},
            "metric": {**closed, "properties": {"name": {"enum": list(METRICS)}, "goal": {"enum": list(GOALS)}}},
            "run_cap": _int(1, description="most trials to start (default: 10)"),
            "seed": _int(description="random seed (default: 42)"),
            "data": {"type": "string", "minLength": 1, "description": "demo, or the data root used without --data"},
            "train": {**closed, "properties": {
                "epochs": _int(1, description="epochs per trial (default: 10)"),
                "steps_per_epoch": _int(1, null=True, description="null: one full pass over train"),
                "batch_per_replica": _int(1, maximum=1024, description="default: 16"),
                "validation_steps": _int(1, null=True, description="null: the whole validation split"),
                "validate_every": {"anyOf": [{"const": "auto"}, _int(1)],
                                   "description": "validate every k epochs, and at each rung and the last "
                                                  "(default: 1); auto: within 20% of the time"},
                "cache": tristate, "jit_compile": tristate,
                "precision": {"enum": list(PRECISIONS)},
                "steps_per_execution": {"anyOf": [{"const": "auto"}, _int(1)]},
            }},
            "hyperband": {**closed, "properties": {"factor": _int(2), "iterations": _int(1)}},
            "early_terminate": {**closed, "required": ["type", "min_iter"], "properties": {
                "type": {"enum": list(TYPES)},
                "min_iter": {"anyOf": [_int(1), {"const": "auto"}],
                             "description": "epochs before the first decision, or auto (hyperband)"},
                "eta": _int(2), "max_iter": _int(1, null=True)}},
            "start_with": {"type": "array", "description": "configurations tried first, in order",
                           "items": {**closed, "minProperties": 1,
                                     "properties": {name: _value(d) for name, d in dimensions().items()}}},
            "parameters": {**closed, "properties": {name: _spec(d) for name, d in dimensions().items()}},
        },
    }


def schema_text() -> str:
    return json.dumps(space_schema(), indent=1) + "\n"
