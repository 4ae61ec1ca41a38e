"""Shared fixtures: small data the tests write themselves in Kaggle's exact
layout and record format, and helpers to run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def make_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A colour and a bar orientation per class plus noise: learnable in a
    few steps, so search tests see a real, non-trivial F1."""
    n = len(labels)
    hue = (labels * 37 % 104) / 104.0
    base = np.stack([np.sin(2 * np.pi * (hue + k / 3)) * 0.5 + 0.5 for k in range(3)], axis=-1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = np.empty((n, size, size, 3), np.float32)
    for i, (lab, col) in enumerate(zip(labels, base)):
        angle = (lab % 8) * np.pi / 8
        bar = (np.abs(np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) < 0.12).astype(np.float32)
        img = col[None, None, :] * (0.55 + 0.45 * bar[..., None])
        imgs[i] = img * 255
    imgs += rng.normal(0, 12, imgs.shape)
    return np.clip(imgs, 0, 255).astype(np.uint8)


def write_dataset(root: Path, sizes=(32, 48), per_class_train=2, per_class_val=1, n_test=30,
                  files=4, seed=0, classes=104) -> Path:
    from tuner.data import records

    rng = np.random.default_rng(seed)
    train_labels = np.repeat(np.arange(classes), per_class_train)
    val_labels = np.repeat(np.arange(classes), per_class_val)
    test_labels = rng.integers(0, classes, n_test)
    test_ids = [f"{rng.integers(0, 16**9):09x}" for _ in range(n_test)]
    for size in sizes:
        for split, labels in (("train", train_labels), ("val", val_labels), ("test", test_labels)):
            jpegs = records.encode_jpeg(make_images(labels, size, np.random.default_rng(seed + size)))
            if split == "test":
                ex = [(j, i, None) for j, i in zip(jpegs, test_ids)]
            else:
                ex = [(j, f"{split}{k:05d}", int(lab)) for k, (j, lab) in enumerate(zip(jpegs, labels))]
            records.write_split(str(root), size, split, ex, num_files=files)
    with open(root / "test_labels.csv", "w") as f:
        f.write("id,label\n" + "".join(f"{i},{lab}\n" for i, lab in zip(test_ids, test_labels)))
    return root


@pytest.fixture(scope="session")
def flower_root(tmp_path_factory) -> Path:
    """Records at 32 and 48 px: 208 train, 104 val, 30 test."""
    return write_dataset(tmp_path_factory.mktemp("flowers"))


@pytest.fixture(scope="session")
def ten_classes(tmp_path_factory) -> Path:
    """Ten classes at 32 px (120 train, 40 val): a learning rate that learns
    scores well above chance in a few steps, one that cannot stays at it."""
    return write_dataset(tmp_path_factory.mktemp("ten"), sizes=(32,), classes=10, per_class_train=12,
                         per_class_val=4, n_test=10, files=2)


@pytest.fixture(scope="session")
def jax_cache(tmp_path_factory) -> dict[str, str]:
    """One persistent JAX compilation cache for the session's JAX processes
    (tests/test_jax.py): a graph compiled once serves every later process,
    those of the other pytest-xdist workers too (their base folders share a parent)."""
    base = tmp_path_factory.getbasetemp()
    d = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax-cache"
    d.mkdir(exist_ok=True)
    return {"JAX_COMPILATION_CACHE_DIR": str(d), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd: Path | None = None):
    e = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd or REPO)


def write_space(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


#: A space small enough for a trial to take seconds at 32 px on 2 cores. Its
#: trials differ in the learning rate only, which the traced step reads from a
#: variable: a search's later trials train in its first trial's traced model
#: (tuner.engine.warm) instead of tracing their own (17 s each on an idle
#: core, 35-45 s under the suite's load). Tests of other dimensions set them.
TINY_SPACE = """\
name: tiny
description: test space
method: random
run_cap: 2
seed: 1
train: {{epochs: {epochs}, steps_per_epoch: {steps}, batch_per_replica: 8, jit_compile: false}}
parameters:
  backbone: {{value: {backbone}}}
  weights: {{value: none}}
  image_size: {{value: 32}}
  optimizer: {{value: adam}}
  learning_rate: {{min: 1.0e-3, max: 3.0e-3, distribution: log_uniform_values}}
  callback: {{value: none}}
{extra}"""


# smallcnn (tuner.model.smallcnn): a new process traces its first epoch in
# 3-4 s on 2 cores against MobileNetV2's 27-33 s, and most tests here pay it.
def tiny_space(tmp_path: Path, epochs=2, steps=2, backbone="smallcnn", extra="", name="tiny.yaml") -> Path:
    return write_space(tmp_path / name, TINY_SPACE.format(epochs=epochs, steps=steps, backbone=backbone, extra=extra))


@pytest.fixture(scope="session")
def finished_project(flower_root, tmp_path_factory) -> Path:
    """One real 2-trial search (2 epochs each), shared by the tests that only
    read its results. Tests using it carry @pytest.mark.xdist_group("finished")
    so pytest-xdist runs them in one worker, and the search runs once."""
    tmp = tmp_path_factory.mktemp("finished")
    space = tiny_space(tmp, epochs=2, steps=6, extra="  flip_left_right: {value: true}\n")
    # a categorical dimension outside the traced graph: trial 1 still reuses trial 0's
    space.write_text(space.read_text().replace("callback: {value: none}",
                                               "callback: {values: [none, reduce_lr_on_plateau]}"))
    project = tmp / "proj"
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(flower_root), "--project", str(project))
    assert r.returncode == 0, r.stdout + r.stderr
    (tmp / "search.log").write_text(r.stdout)
    return project


def event_steps(folder: Path, tag: str = "val_f1") -> list[int]:
    """Every step of `tag` in a TensorBoard run folder's event files, read raw
    with TensorBoard's own loader (no de-duplication: a repeated epoch shows)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            steps += [int(event.step) for v in event.summary.value if v.tag == tag]
    return sorted(steps)
