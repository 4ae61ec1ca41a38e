"""The space format as a JSON Schema (tuner.schema): shipped, generated from
the validator's own tables, and in agreement with the validator."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import REPO, run_cli
from tuner.errors import SpaceError
from tuner.schema import SCHEMA_FILE, schema_text, space_schema
from tuner.spaces import parse_space

SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_the_shipped_schema_is_the_generated_one():
    assert SCHEMA_FILE.read_text() == schema_text(), "run: python -m tuner spaces --schema > tuner/space.schema.json"
    r = run_cli("spaces", "--schema")
    assert r.returncode == 0 and json.loads(r.stdout) == space_schema()
    jsonschema.Draft7Validator.check_schema(space_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_space_is_valid_and_points_editors_at_the_schema(path: Path):
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../tuner/space.schema.json"
    assert (path.parent / "../tuner/space.schema.json").resolve() == SCHEMA_FILE.resolve()
    jsonschema.validate(yaml.safe_load(path.read_text()), space_schema())


BASE = "method: random\ntrain: {epochs: 4}\nparameters:\n  backbone: {value: resnet50v2}\n"


# Appended to BASE: a top-level key, or a line of its `parameters`.
@pytest.mark.parametrize("extra", [
    "paramters: {}\n",                                   # a typo in a top-level key
    "early_terminate: {type: asha, min_iter: 1}\n",      # an unknown type
    "early_terminate: {type: hyperband, min_iter: soon}\n",  # neither an int nor auto
    "train2: {epochs: 3}\n",
    "  optimizer: {value: adamm}\n",
    "  learning_rate: {min: 0.0, max: 0.1}\n",             # (0, 1]: 0 is out
    "  learning_rate: 2.0\n",
    "  dropout: {values: []}\n",
    "  image_size: {min: 32, max: 64, distribution: uniform}\n",  # an int takes int_uniform
    "  callback: {value: early_stop}\n",
    "  flip_left_right: {value: 1}\n",
    "  epoch: {value: 3}\n",                               # an unknown dimension
    "  weights: {value: weights.pt}\n",
])
def test_what_the_schema_flags_the_validator_refuses_too(extra):
    text = BASE + extra
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), space_schema())
    with pytest.raises(SpaceError):
        parse_space(text)


@pytest.mark.parametrize("param", [
    "  weights: {value: /data/resnet.weights.h5}\n",
    "  weights: null\n",
    "  learning_rate: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}\n",
    "  image_size: {values: [32, 64]}\n",
    "  rotation: {min: 0.0, max: 20.0, q: 5.0}\n",
    "  batch_per_replica: 32\n",
])
def test_a_good_parameter_passes_both(param):
    text = BASE + param
    jsonschema.validate(yaml.safe_load(text), space_schema())
    parse_space(text)


@pytest.mark.parametrize("block", ["{type: hyperband, min_iter: auto}", "{type: hyperband, min_iter: 2, eta: 2}"])
def test_min_iter_auto_or_an_int_passes_both(block):
    text = BASE + "early_terminate: " + block + "\n"
    jsonschema.validate(yaml.safe_load(text), space_schema())
    assert parse_space(text).early_terminate.min_iter in ("auto", 2)
