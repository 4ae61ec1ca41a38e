"""Search-space files: shipped ones load, malformed ones fail with one line
naming the file and key, fingerprints ignore formatting, overrides apply."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuner import spaces
from tuner.errors import SpaceError
from tuner.spaces import diff, load_space, resolve

AUG_NAMES = {"flip_left_right", "flip_up_down", "brightness", "contrast",
             "saturation", "hue", "rotation", "shear", "zoom", "shift", "crop"}

SMALL = """\
name: small
method: random
run_cap: 4
train: {epochs: 3, steps_per_epoch: 5}
parameters:
  optimizer: {values: [adam, nadam]}
  learning_rate: {min: 1.0e-4, max: 1.0e-2, distribution: log_uniform_values}
  image_size: {value: 64}
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def error_of(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(str(p))
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(p) + ": "), msg
    return msg


def with_params(params: str, top: str = "") -> str:
    return top + "parameters:\n" + textwrap.indent(textwrap.dedent(params), "  ")


# ---------------------------------------------------------------- shipped


def test_shipped_spaces_all_load():
    names = [n for n, _ in spaces.list_spaces()]
    assert {"default", "demo", "kaggle-tpu", "cpu"} <= set(names)
    assert names == sorted(names)
    for name, description in spaces.list_spaces():
        s = load_space(name)
        assert s.name == name  # a shipped space is named after its file
        assert description and s.description == description
        assert s.varying, name
        assert set(s.params) == set(spaces.DIMENSIONS)


def test_default_space_is_the_study():
    s = load_space("default")
    assert s.method == "tpe" and s.run_cap == 40 and s.seed == 42
    assert s.start_with == ({"backbone": "resnet50v2", "optimizer": "nadam", "learning_rate": 1e-3,
                             "callback": "reduce_lr_on_plateau"},)  # the study's best CPU configuration
    assert (s.objective_name, s.goal) == ("val_f1", "max")
    # the study's 14,400 images a trial (90 x 10 x 16), as 18 epochs of 50 steps
    assert (s.train.epochs, s.train.steps_per_epoch, s.train.batch_per_replica) == (18, 50, 16)
    assert (s.early_terminate.type, s.early_terminate.min_iter, s.early_terminate.eta) == ("hyperband", 6, 3)
    assert s.params["backbone"].values == ("resnet50", "resnet50v2")
    lr = s.params["learning_rate"]
    assert (lr.kind, lr.min, lr.max, lr.distribution) == ("range", 1e-5, 1e-3,
                                                          "log_uniform_values")
    assert s.params["image_size"].value == 192
    assert s.params["flip_left_right"].values == (True, False)
    assert s.params["epochs"].value == 18 and s.params["batch_per_replica"].value == 16


def test_demo_space_uses_demo_data_without_download():
    s = load_space("demo")
    assert s.data == "demo" and s.method == "random"
    assert s.params["weights"].value == "none"
    assert s.params["image_size"].value == 64
    assert s.early_terminate is not None  # the demo shows early termination at work


def test_importing_spaces_stays_light():
    code = ("import sys, tuner.spaces as s; s.load_space('default'); "
            "assert 'tensorflow' not in sys.modules and 'keras_tuner' not in sys.modules, "
            "sorted(m for m in sys.modules if 'tensorflow' in m or 'keras' in m)[:5]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dimensions_table():
    dims = spaces.DIMENSIONS
    assert AUG_NAMES <= set(dims)
    assert dims["backbone"].choices and "resnet50v2" in dims["backbone"].choices
    assert dims["learning_rate"].allowed == "a number in (0, 1]"
    assert dims["rotation"].max == 180.0 and dims["flip_up_down"].type == "bool"


# ---------------------------------------------------------------- defaults


def test_defaults_are_filled_in(tmp_path):
    s = load_space(str(write(tmp_path, SMALL)))
    assert s.name == "small" and s.varying == ("optimizer", "learning_rate")
    assert s.params["backbone"].value == "resnet50v2"
    assert s.params["weights"].value == "imagenet"
    assert s.params["callback"].value == "reduce_lr_on_plateau"
    assert s.params["dropout"].value == 0.2
    assert s.params["flip_left_right"].value is False
    assert s.params["rotation"].value == 0.0
    assert s.params["epochs"].value == 3  # from train.epochs
    assert s.params["batch_per_replica"].value == 16
    assert s.objective_name == "val_f1" and s.goal == "max"
    assert (s.hyperband.factor, s.hyperband.iterations) == (3, 1)
    assert s.train.cache == "auto" and s.train.validation_steps is None


def test_minimal_file_and_name_from_stem(tmp_path):
    s = load_space(str(write(tmp_path, "parameters: {}\n", "tiny.yaml")))
    assert s.name == "tiny" and s.method == "bayes" and s.run_cap == 10
    assert s.varying == () and s.train.steps_per_epoch is None


def test_bare_scalars_null_and_yaml12_floats(tmp_path):
    s = load_space(str(write(tmp_path, with_params("""\
        optimizer: adam
        weights: null
        class_weight: {values: [null, balanced]}
        learning_rate: 1e-4
        dropout: 0
        weight_decay: {min: 0, max: 0.1}
        dense_units: {min: 0, max: 512, q: 64}
        """))))
    p = s.params
    assert p["optimizer"].value == "adam" and p["weights"].value == "none"
    assert p["class_weight"].values == ("none", "balanced")
    assert p["learning_rate"].value == 1e-4
    assert p["dropout"].value == 0.0 and isinstance(p["dropout"].value, float)
    wd = p["weight_decay"]
    assert wd.distribution == "uniform" and isinstance(wd.min, float)
    du = p["dense_units"]
    assert (du.distribution, du.min, du.max, du.q) == ("int_uniform", 0, 512, 64)


def test_weights_path_accepted(tmp_path):
    s = load_space(str(write(tmp_path, with_params("weights: /models/r50.weights.h5\n"))))
    assert s.params["weights"].value == "/models/r50.weights.h5"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("text, key, words", [
    ("parameters: {}\nrun_caps: 3\n", "run_caps", "did you mean 'run_cap'"),
    (with_params("learning_rat: {value: 0.1}\n"),
     "parameters.learning_rat", "did you mean 'learning_rate'"),
    (with_params("backbone: {values: [resnet50, resnet5]}\n"),
     "parameters.backbone.values[1]", "did you mean 'resnet50'"),
    (with_params("optimizer: {value: adamx}\n"),
     "parameters.optimizer.value", "nadam, rmsprop, adam, sgd, adamw"),
    (with_params("learning_rate: {min: 0.01, max: 0.001}\n"),
     "parameters.learning_rate.min", "greater than max"),
    (with_params("learning_rate: {min: 0.01, max: 0.01}\n"),
     "parameters.learning_rate", "{value: 0.01}"),
    (with_params("dropout: {min: 0, max: 0.5, distribution: log_uniform_values}\n"),
     "parameters.dropout.min", "min > 0"),
    (with_params("learning_rate: {value: fast}\n"),
     "parameters.learning_rate.value", "not a number"),
    (with_params("epochs: {value: true}\n"), "parameters.epochs.value", "not an int"),
    ("train: {epochs: true}\n", "train.epochs", "expected an int >= 1"),
    (with_params("optimizer: {values: []}\n"), "parameters.optimizer.values", "empty"),
    (with_params("learning_rate: {values: [0.001, high]}\n"),
     "parameters.learning_rate.values", "mix types"),
    (with_params("optimizer: {values: [adam, adam]}\n"),
     "parameters.optimizer.values[1]", "twice"),
    (with_params("rotation: {min: 0, max: 270}\n"),
     "parameters.rotation.max", "[0, 180]"),
    (with_params("hue: {value: 0.7}\n"), "parameters.hue.value", "[0, 0.5]"),
    (with_params("flip_up_down: {value: 1}\n"), "parameters.flip_up_down.value",
     "true or false"),
    (with_params("optimizer: {value: adam, values: [adam, nadam]}\n"),
     "parameters.optimizer", "exactly one of"),
    (with_params("optimizer: {min: 1, max: 2}\n"), "parameters.optimizer", "cannot be a range"),
    (with_params("learning_rate: {min: 0.001, max: 0.1, distribution: normal}\n"),
     "parameters.learning_rate.distribution", "uniform, log_uniform_values"),
    (with_params("learning_rate: {min: 1.0e-4, max: 0.1, foo: 1}\n"),
     "parameters.learning_rate.foo", "unknown key"),
    (with_params("image_size: {value: 2048}\n"), "parameters.image_size.value", "[32, 1024]"),
    (with_params("weights: imagent\n"), "parameters.weights", "did you mean 'imagenet'"),
    (with_params("fine_tune_blocks: {min: 1.5, max: 4}\n"),
     "parameters.fine_tune_blocks.min", "not an int"),
    (with_params("backbone: xception\nimage_size: 64\n"), "parameters.image_size", "71"),
    (with_params("weights: none\nfine_tune: top\n"), "parameters.fine_tune", "fine_tune: full"),
    (with_params("weights: none\nfine_tune: {values: [full, frozen]}\n"),
     "parameters.fine_tune", "frozen with weights none"),
    (with_params("batchnorm: learn\n"), "parameters.batchnorm", "frozen, train"),
    ("method: grid\n", "method", "random, bayes, hyperband"),
    ("metric: {name: val_auc}\n", "metric.name", "val_f1"),
    ("metric: {name: val_loss, goal: maximize}\n", "metric.goal", "minimize"),
    ("run_cap: 0\n", "run_cap", ">= 1"),
    ("train: {epoch: 3}\n", "train.epoch", "did you mean 'epochs'"),
    ("train: {cache: sometimes}\n", "train.cache", "auto, true, false"),
    ("hyperband: {factor: 1}\n", "hyperband.factor", ">= 2"),
    ("method: hyperband\n" + with_params("epochs: {values: [5, 10]}\n"),
     "parameters.epochs", "hyperband"),
    ("parameters: [a, b]\n", "parameters", "not a mapping"),
])
def test_malformed_files_name_file_and_key(tmp_path, text, key, words):
    msg = error_of(tmp_path, text)
    assert f": {key}: " in msg, msg
    assert words in msg, msg


def test_bad_yaml_gives_line_and_column(tmp_path):
    msg = error_of(tmp_path, "parameters:\n  optimizer: {values: [adam, nadam}\n")
    assert "invalid YAML" in msg and "line 2" in msg and "column" in msg


def test_duplicate_key_is_an_error(tmp_path):
    msg = error_of(tmp_path, "run_cap: 3\nrun_cap: 4\n")
    assert "duplicate key 'run_cap'" in msg and "line 2" in msg


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("- a\n- b\n", "not a mapping"),
    ("just a string\n", "not a mapping"),
])
def test_empty_or_non_mapping_file(tmp_path, text, words):
    assert words in error_of(tmp_path, text)


def test_resolve_unknown_name_lists_shipped():
    with pytest.raises(SpaceError) as info:
        resolve("defalt")
    msg = str(info.value)
    assert "unknown space 'defalt'" in msg
    for name in ("cpu", "default", "demo", "kaggle-tpu"):
        assert name in msg
    assert "path to a .yaml file" in msg


def test_resolve_paths(tmp_path):
    p = write(tmp_path, SMALL)
    assert resolve(str(p)) == p
    assert resolve("demo") == spaces.SHIPPED_DIR / "demo.yaml"
    with pytest.raises(SpaceError, match="no such file"):
        resolve(str(tmp_path / "missing.yaml"))


# ------------------------------------------------------- fingerprint & diff


def test_fingerprint_ignores_formatting_and_labels(tmp_path):
    a = load_space(str(write(tmp_path, SMALL, "a.yaml")))
    reformatted = ("# a comment\n\n" + SMALL.replace(": {", ":   {")
                   .replace("name: small", "name: renamed\ndescription: now described")
                   + "   # trailing\n")
    b = load_space(str(write(tmp_path, reformatted, "b.yaml")))
    assert a.text != b.text
    assert a.fingerprint == b.fingerprint
    assert diff(a.to_dict(), b.to_dict()) == []
    # spelling a default out is not a change either
    c = load_space(str(write(tmp_path, SMALL + "  dropout: 0.2\n", "c.yaml")))
    assert c.fingerprint == a.fingerprint


def test_fingerprint_and_diff_see_value_edits(tmp_path):
    a = load_space(str(write(tmp_path, SMALL, "a.yaml")))
    edited = (SMALL.replace("max: 1.0e-2", "max: 1.0e-1").replace("run_cap: 4", "run_cap: 6")
              .replace("{value: 64}", "{values: [64, 96]}"))
    b = load_space(str(write(tmp_path, edited, "b.yaml")))
    assert a.fingerprint != b.fingerprint
    lines = diff(a.to_dict(), b.to_dict())
    assert "run_cap: 4 -> 6" in lines
    assert "parameters.learning_rate.max: 0.01 -> 0.1" in lines
    assert "parameters.image_size: {value: 64} -> {values: [64, 96]}" in lines
    assert len(lines) == 3


def test_to_dict_is_json_and_round_trips(tmp_path):
    import json

    s = load_space("kaggle-tpu")
    d = json.loads(json.dumps(s.to_dict()))
    assert d == s.to_dict()
    assert d["train"]["steps_per_epoch"] is None
    assert spaces.fingerprint(d) == s.fingerprint


# ---------------------------------------------------------------- overrides


def test_with_overrides():
    s = load_space("default")
    o = s.with_overrides(epochs=7, steps_per_epoch=3, method="random", run_cap=1,
                         seed=7, weights="none")
    assert (o.train.epochs, o.train.steps_per_epoch) == (7, 3)
    assert o.params["epochs"].value == 7
    assert (o.method, o.run_cap, o.seed) == ("random", 1, 7)
    assert o.params["weights"].value == "none" and o.params["weights"].kind == "fixed"
    assert o.fingerprint != s.fingerprint and o.text == s.text
    assert s.train.epochs == 18  # the original is untouched
    assert s.with_overrides().fingerprint == s.fingerprint
    assert s.with_overrides(steps_per_epoch=0).train.steps_per_epoch is None
    assert "method: tpe -> random" in diff(s.to_dict(), o.to_dict())
    with pytest.raises(SpaceError, match=r"--epochs 2 is below early_terminate's first rung \(min_iter 6\); give --epochs 7"):
        s.with_overrides(epochs=2)


@pytest.mark.parametrize("kw, words", [
    ({"method": "grid"}, "--method"),
    ({"epochs": 0}, "--epochs"),
    ({"run_cap": 0}, "--run-cap"),
    ({"weights": "imagenett"}, "--weights"),
])
def test_bad_overrides(kw, words):
    with pytest.raises(SpaceError, match=words):
        load_space("default").with_overrides(**kw)


# ---------------------------------------------------------------- keras tuner


def test_declare_on_keras_tuner_hyperparameters():
    kt = pytest.importorskip("keras_tuner")
    s = load_space("kaggle-tpu")
    hp = kt.HyperParameters()
    values = s.declare(hp)
    assert set(values) == set(spaces.DIMENSIONS) == set(hp.values)
    assert values["image_size"] == 512 and values["weights"] == "imagenet"
    assert values["backbone"] in ("resnet50", "resnet50v2")
    assert isinstance(values["flip_up_down"], bool)
    assert isinstance(hp.values["flip_up_down"], bool)  # Boolean, not a 0/1 Choice
    assert 1e-5 <= values["learning_rate"] <= 1e-3

    # the oracle samples inside the declared ranges and choices
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective(s.objective_name, s.goal), max_trials=5, seed=s.seed,
        hyperparameters=hp)
    for _ in range(10):
        v = s.coerce(oracle._random_values())
        assert v["optimizer"] in ("nadam", "adam")
        assert 1e-5 <= v["learning_rate"] <= 1e-3
        assert 0.0 <= v["label_smoothing"] <= 0.1 and 0.0 <= v["rotation"] <= 15.0
        assert v["class_weight"] in ("none", "balanced")
        assert isinstance(v["flip_up_down"], bool)

    cpu = load_space("cpu")
    hp2 = kt.HyperParameters()
    v2 = cpu.declare(hp2)
    assert isinstance(v2["fine_tune_blocks"], int) and 1 <= v2["fine_tune_blocks"] <= 4
    assert v2["epochs"] == 8 and "steps_per_epoch" not in v2  # train settings are not hps


# ------------------------------------------------------- weights x fine_tune


def test_batchnorm_is_a_dimension_frozen_by_default(tmp_path):
    dim = spaces.DIMENSIONS["batchnorm"]
    assert (dim.default, dim.choices) == ("frozen", ("frozen", "train"))
    assert load_space(str(write(tmp_path, SMALL))).params["batchnorm"].value == "frozen"
    s = load_space(str(write(tmp_path, with_params("batchnorm: {values: [frozen, train]}\n"))))
    assert s.params["batchnorm"].values == ("frozen", "train") and "batchnorm" in s.varying


def test_partial_fine_tuning_needs_pretrained_weights(tmp_path):
    """A fixed `weights: none` cannot go with fine_tune top/frozen (it would
    freeze random layers), also when --weights none makes it so; a choice
    that only sometimes draws none is allowed (the hypermodel then trains
    the full backbone)."""
    cpu = load_space("cpu")  # fine_tune: top
    with pytest.raises(SpaceError, match=r"parameters.fine_tune: top with weights none.*fine_tune: full"):
        cpu.with_overrides(weights="none")
    assert cpu.with_overrides(weights="/w/r50.h5").params["weights"].value == "/w/r50.h5"
    mixed = load_space(str(write(tmp_path, with_params(
        "weights: {values: [imagenet, none]}\nfine_tune: {values: [full, top]}\n"))))
    assert mixed.varying == ("weights", "fine_tune")
    scratch = load_space(str(write(tmp_path, with_params("weights: none\nfine_tune: full\n"))))
    assert scratch.params["fine_tune"].value == "full"


def test_a_backbone_without_imagenet_weights_refuses_them_in_one_line(tmp_path):
    with pytest.raises(SpaceError, match=r"parameters.weights: smallcnn has no ImageNet weights; use weights none"):
        load_space(str(write(tmp_path, with_params("backbone: smallcnn\nweights: imagenet\n"))))
    with pytest.raises(SpaceError, match="smallcnn has no ImageNet weights"):
        load_space(str(write(tmp_path, with_params("backbone: {values: [resnet50, smallcnn]}\n"
                                                   "weights: {values: [imagenet, none]}\n"))))
    assert load_space(str(write(tmp_path, with_params("backbone: smallcnn\nweights: none\n")))).params[
        "backbone"].value == "smallcnn"


def test_a_project_begun_before_a_new_dimension_still_resumes(tmp_path):
    """A dimension added later (here `batchnorm`) at its default is no change;
    any real change still refuses the resume."""
    from tuner.engine import project as proj
    from tuner.errors import ProjectError
    from tuner.search import SearchOptions, prepare

    space = load_space("cpu")
    old = space.to_dict()
    old["parameters"].pop("batchnorm")
    project = str(tmp_path / "p")
    proj.write_meta(project, {"space": old, "space_text": space.text, "data": str(tmp_path)})
    prepare(SearchOptions(space="cpu", project=project, data=str(tmp_path)), need_data=False)
    old["parameters"]["optimizer"] = {"values": ["sgd"]}
    proj.write_meta(project, {"space": old, "space_text": space.text, "data": str(tmp_path)})
    with pytest.raises(ProjectError, match="parameters.optimizer"):
        prepare(SearchOptions(space="cpu", project=project, data=str(tmp_path)), need_data=False)
