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
    values = {"backbone": "mobilenetv2", "weights": "none", "image_size": 32, "optimizer": "adam",
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
