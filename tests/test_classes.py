"""Any dataset in Kaggle's layout, not only the 104 flowers: the class count
comes from the data, the names from classes.txt / class_names.json, and the
head, the macro metrics, class weights and the export follow them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from conftest import run_cli, tiny_space, write_dataset
from tuner.data.classes import CLASS_NAMES
from tuner.data.reader import FlowerData
from tuner.errors import DataError

NAMES = ["rose", "tulip", "daisy", "iris", "lily", "orchid", "poppy"]


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> Path:
    """7 classes at 32 px: 84 train, 42 val, 10 test records, and classes.txt."""
    root = write_dataset(tmp_path_factory.mktemp("seven"), sizes=(32,), per_class_train=12, per_class_val=6,
                         n_test=10, files=2, classes=7)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
    return root


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _copy(seven: Path, dest: Path, names_file: str | None, text: str = "") -> Path:
    shutil.copytree(seven, dest, ignore=shutil.ignore_patterns("classes.txt"))
    if names_file:
        (dest / names_file).write_text(text)
    return dest


def test_class_count_and_names_come_from_the_data(seven, tmp_path, monkeypatch, flower_root):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = FlowerData(str(seven), 32, log=None)
    assert data.num_classes == 7 and data.class_names == NAMES
    assert data.class_counts().tolist() == [12] * 7 and data.class_counts("val").tolist() == [6] * 7
    assert data.class_weights().shape == (7,)
    _, y = next(iter(data.val_dataset(8)))
    assert y.shape == (8, 7)
    bare = FlowerData(str(_copy(seven, tmp_path / "bare", None)), 32, log=None)
    assert bare.class_names == [f"class {i}" for i in range(7)]
    as_json = _copy(seven, tmp_path / "json", "class_names.json", json.dumps(NAMES[::-1]))
    assert FlowerData(str(as_json), 32, log=None).class_names == NAMES[::-1]
    flowers = FlowerData(str(flower_root), 32, log=None)  # 104 classes, no names file
    assert flowers.num_classes == 104 and flowers.class_names == list(CLASS_NAMES)


def test_val_f1_is_sklearns_macro_f1_over_the_datas_classes(seven, tmp_path):
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.model.strategy import StrategyInfo
    from tuner.spaces import load_space

    space = load_space(tiny_space(tmp_path, epochs=1, steps=3))
    data = FlowerData(str(seven), 32, log=None)
    hm = FlowerHyperModel(space, lambda size: data, StrategyInfo(tf.distribute.get_strategy(), "cpu", 1, ()), seed=3)
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    keras.utils.set_random_seed(3)
    model = hm.build(hp)
    assert model.output_shape == (None, 7)
    history = hm.fit(hp, model)
    y, p = [], []
    for x, onehot in data.val_dataset(16):
        y.append(np.argmax(onehot.numpy(), axis=1))
        p.append(np.argmax(model.predict_on_batch(x), axis=1))
    y, p = np.concatenate(y), np.concatenate(p)
    assert len(y) == 42
    want = f1_score(y, p, labels=range(7), average="macro", zero_division=0)
    assert want > 0
    assert history.history["val_f1"][-1] == pytest.approx(want, abs=1e-5)
    acc = float((y == p).mean())
    assert history.history["val_accuracy"][-1] == pytest.approx(acc, abs=1e-6)


def test_label_beyond_the_names_is_one_line(seven, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _copy(seven, tmp_path / "five", "classes.txt", "\n".join(NAMES[:5]) + "\n")
    data = FlowerData(str(root), 32, log=None)
    with pytest.raises(DataError) as e:
        data.check()
    msg = str(e.value)
    # train's labels are 0,0,..,6 in order over two files: the first 5 is record 18 of file 01
    victim = data.files("train")[1]
    assert "\n" not in msg and msg.startswith(f"label 5 of record 18 in {victim} is outside the 5 class names in "
                                              f"{root}/classes.txt"), msg
    r = run_cli("check", "--data", str(root), "--image-size", "32", env={"XDG_CACHE_HOME": str(tmp_path / "c2")})
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_line_error(r.stderr)
    assert "label 5" in line and "classes.txt" in line, line


@pytest.mark.slow  # ~3 min; the direct fit above checks val_f1 on every make test
def test_search_and_export_follow_the_datas_classes(seven, tmp_path):
    space = tiny_space(tmp_path, epochs=1, steps=4)
    project, out = tmp_path / "proj", tmp_path / "export"
    r = run_cli("search", "--plain", "--space", str(space), "--data", str(seven), "--project", str(project),
                "--max-trials", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("best", "--project", str(project), "--export", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["per_class_f1"]) == NAMES and metrics["images"] == 42
    report = (out / "classification_report.txt").read_text()
    assert all(name in report for name in NAMES) and "pink primrose" not in report

    import keras

    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 7)
    data = FlowerData(str(seven), 32, log=None)
    y = np.array([int(lab) for _, lab in data.decoded("val")])
    p = np.concatenate([np.argmax(model.predict_on_batch(x), axis=1) for x, _ in data.val_dataset(16, cache=False)])
    assert metrics["macro_f1"] == pytest.approx(f1_score(y, p, labels=range(7), average="macro", zero_division=0))
