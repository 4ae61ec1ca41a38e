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
