"""Strategy detection on this machine: CPU default, and MirroredStrategy on
the CPU split into logical devices (each case in a fresh process, since the
split must happen before TensorFlow initialises its devices)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

PROBE = """
import json, sys
from tuner.model.strategy import detect
info = detect(sys.argv[1], int(sys.argv[2]) or None)
print(json.dumps({"kind": info.kind, "replicas": info.replicas, "batch": info.global_batch(16),
                  "cls": type(info.strategy).__name__}))
"""


def probe(kind: str, cpu_replicas: int = 0) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, kind, str(cpu_replicas)], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_auto_is_the_cpu_with_one_replica():
    assert probe("auto") == {"kind": "cpu", "replicas": 1, "batch": 16, "cls": "_DefaultDistributionStrategy"}


def test_mirrored_on_two_logical_cpus_has_two_replicas():
    got = probe("mirrored", 2)
    assert got == {"kind": "mirrored", "replicas": 2, "batch": 32, "cls": "MirroredStrategy"}


def test_tpu_request_without_a_tpu_is_one_clear_error():
    from tuner.errors import TunerError
    from tuner.model.strategy import detect

    with pytest.raises(TunerError, match="no TPU could be reached") as e:
        detect("tpu")
    assert "\n" not in str(e.value)


def test_steps_per_execution_is_many_on_a_tpu_only_and_reaches_compile():
    from tuner.model.hypermodel import build_model
    from tuner.model.strategy import TPU_STEPS_PER_EXECUTION, steps_per_execution

    assert steps_per_execution("auto", "tpu") == TPU_STEPS_PER_EXECUTION > 1
    assert steps_per_execution("auto", "cpu") == steps_per_execution("auto", "mirrored") == 1
    assert steps_per_execution(4, "cpu") == 4
    values = {"backbone": "smallcnn", "weights": "none", "image_size": 32, "optimizer": "adam",
              "learning_rate": 1e-3}
    assert build_model(values, jit_compile=False, num_classes=3, steps_per_execution=4).steps_per_execution == 4


@pytest.mark.parametrize("value, says", [(0, "0 is too small"), ("fast", "'fast' is a string"), (1.5, "1.5 is a float")])
def test_a_bad_steps_per_execution_is_one_line(value, says):
    from conftest import TINY_SPACE
    from tuner.errors import SpaceError
    from tuner.spaces import parse_space

    text = TINY_SPACE.format(epochs=1, steps=1, backbone="resnet50v2", extra="")
    bad = text.replace("jit_compile: false}", f"jit_compile: false, steps_per_execution: {value}}}")
    with pytest.raises(SpaceError, match=r"train\.steps_per_execution") as e:
        parse_space(bad)
    assert says in str(e.value) and "expected auto or an int >= 1" in str(e.value) and "\n" not in str(e.value)
    assert parse_space(text.replace("jit_compile: false}", "jit_compile: false, steps_per_execution: 8}")
                       ).train.steps_per_execution == 8


def test_every_epoch_trains_exactly_its_steps_whatever_steps_per_execution(flower_root, tmp_path):
    """Keras 3 runs `range(0, steps_per_epoch, N)` calls of N steps each: 3
    steps per call over a 4-step epoch would train 6. The tuner takes the
    largest divisor of the epoch's steps not above the asked value."""
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    from conftest import tiny_space
    from tuner.data.reader import FlowerData
    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.model.strategy import StrategyInfo, steps_per_execution
    from tuner.search import _steps_line
    from tuner.spaces import load_space

    assert steps_per_execution("auto", "tpu", 10) == 10  # the default space: 10 steps per epoch
    assert steps_per_execution("auto", "tpu", 99) == 11  # kaggle-tpu: 12,753 images / 128
    assert steps_per_execution("auto", "tpu", 128) == steps_per_execution("auto", "tpu") == 32
    assert steps_per_execution(4, "cpu", 13) == 1 and steps_per_execution(4, "cpu", 2) == 2
    assert steps_per_execution("auto", "cpu", 7) == 1

    path = tiny_space(tmp_path, epochs=1, steps=4)
    path.write_text(path.read_text().replace("jit_compile: false}", "jit_compile: false, steps_per_execution: 3}"))
    space = load_space(path)
    data = FlowerData(str(flower_root), 32, log=None)
    hm = FlowerHyperModel(space, lambda size: data, StrategyInfo(tf.distribute.get_strategy(), "cpu", 1, ()), seed=3)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    keras.utils.set_random_seed(3)
    model = hm.build(hp)
    hm.fit(hp, model)
    assert int(model.optimizer.iterations) == 4
    assert model.steps_per_execution == 2
    assert _steps_line(space, hm) == ("steps_per_execution: 2 (asked 3; 2 is the largest divisor of the 4 steps "
                                      "per epoch not above it, so that every epoch trains exactly 4 steps)")
