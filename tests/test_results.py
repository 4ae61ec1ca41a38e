"""status, best and best --export on a small finished search."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score

from conftest import REPO, run_cli
from tuner.data.classes import CLASS_NAMES


pytestmark = pytest.mark.xdist_group("finished")


@pytest.fixture(scope="module")
def finished(finished_project) -> Path:
    return finished_project


@pytest.fixture(scope="module")
def exported(finished, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("export") / "best"
    r = run_cli("best", "--project", str(finished), "--export", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r.stdout


def test_status_lists_every_trial(finished):
    r = run_cli("status", "--project", str(finished))
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| trial")]
    assert len(lines) == 2
    header = next(ln for ln in r.stdout.splitlines() if ln.startswith("| trial"))
    for col in ("state", "callback", "learning_rate", "epochs", "val F1", "best epoch", "precision", "recall",
                "time"):
        assert col in header
    assert all("completed" in ln and "2/2" in ln for ln in lines)
    assert "dtype" in header and all(f" {auto_policy()} " in ln for ln in lines)


def auto_policy() -> str:
    """What `precision: auto` chooses on this machine (mixed_bfloat16 on a CPU with AMX-BF16)."""
    from tuner.model.precision import choose, this_device

    return choose("auto", this_device("cpu"))[0]


def test_best_shows_the_study_table(finished):
    r = run_cli("best", "--project", str(finished), "--top", "1")
    assert r.returncode == 0, r.stderr
    for col in ("model", "callback", "epochs", "image preparation", "steps per epoch", "image size", "batch size",
                "optimizer", "recall", "precision", "F1", "best epoch"):
        assert col in r.stdout
    assert "flip left right" in r.stdout and str(finished / "trial_") in r.stdout
    assert f"{auto_policy()})" in r.stdout  # each trial's precision


def test_export_writes_every_file(exported):
    out, stdout = exported
    for name in ("model.keras", "metrics.json", "classification_report.txt", "submission.csv", "hyperparameters.json",
                 "trials.csv", "trials.md", "curves.png", "confusion_matrix.png", "predictions.png", "search.png",
                 "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "model.export" / "saved_model.pb").is_file()
    for png in out.glob("*.png"):
        raw = png.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image

        h, w = matplotlib.image.imread(png).shape[:2]
        assert w >= 400 and h >= 250, png.name
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    report = (out / "report.md").read_text()
    assert "confusion_matrix.png" in report and "macro F1" in report


def test_importance_is_left_out_below_eight_trials(exported):
    """Two scored trials: no importance.png, and report.md says why."""
    out, stdout = exported
    assert not (out / "importance.png").exists()
    report = (out / "report.md").read_text()
    assert "importance.png" not in report
    assert "Hyperparameter importance is left out: 2 scored trial(s)" in report and "fewer than 8" in report
    assert "importance.png left out (2 scored trials, needs 8)" in stdout


def _trial_with_history(tmp_path, tid: str, values: dict, curve: list[float], state: str = "completed"):
    """A TrialInfo over a real trial folder whose history.csv holds `curve` (val_f1 by epoch)."""
    from tuner.results.trials import TrialInfo

    tdir = tmp_path / f"trial_{tid}"
    tdir.mkdir()
    rows = ["epoch,val_f1"] + [f"{e},{v}" for e, v in enumerate(curve, 1)]
    (tdir / "history.csv").write_text("\n".join(rows) + "\n")
    best = max(range(len(curve)), key=lambda i: curve[i]) if curve else None
    return TrialInfo(tid, state, values, str(tdir), epochs_done=len(curve),
                     best_epoch=None if best is None else best + 1,
                     metrics={} if best is None else {"val_f1": curve[best]})


IMPORTANCE_SPACE = {"space": {"metric": {"name": "val_f1", "goal": "maximize"}, "parameters": {
    "learning_rate": {"min": 1e-4, "max": 1e-2, "distribution": "log_uniform_values"},
    "dropout": {"min": 0.0, "max": 0.6}, "backbone": {"value": "resnet50v2"}}}}


def test_importance_is_drawn_from_eight_trials_and_a_stale_plot_goes(tmp_path):
    from tuner.results.export import _importance

    out = tmp_path / "out"
    out.mkdir()
    trials = [_trial_with_history(tmp_path, str(i), {"learning_rate": 10 ** (-4 + i / 4), "dropout": 0.3,
                                                     "backbone": "resnet50v2"}, [i / 20, i / 10])
              for i in range(8)]
    trials.append(_trial_with_history(tmp_path, "8", {"learning_rate": 1e-3, "dropout": 0.3}, [], state="failed"))
    name, lines = _importance(IMPORTANCE_SPACE, trials, str(out))
    assert name == "importance.png" and (out / "importance.png").stat().st_size > 0
    text = "\n".join(lines)
    assert "![importance](importance.png)" in lines and "learning_rate 1.00" in text
    assert "Optuna's fANOVA over the 8 trials that reached epoch 2, each scored by its best val_f1" in text
    name, lines = _importance(IMPORTANCE_SPACE, trials[1:], str(out))  # 7 scored, 1 failed
    assert not (out / "importance.png").exists() and "left out: 7 scored trial(s)" in lines[0]


def test_importance_compares_trials_at_one_epoch_not_survivors_with_stopped_ones(tmp_path):
    """Half the trials (high dropout) were stopped at epoch 2, the others trained
    6 epochs; among the trials at a common epoch the score depends on the
    learning rate alone. Scores of different lengths would make dropout
    ("was it stopped") look like what matters."""
    from tuner.results.export import _importance

    rng = np.random.default_rng(3)
    trials = []
    for i in range(16):
        lr, dropout = float(10 ** rng.uniform(-4, -2)), (0.05 + 0.25 * rng.random()) + (0.3 if i % 2 else 0.0)
        quality = 1.0 - 0.3 * abs(np.log10(lr) + 3.0)
        epochs = 2 if i % 2 else 6
        curve = [round(quality * e / 6, 4) for e in range(1, epochs + 1)]
        trials.append(_trial_with_history(tmp_path, f"{i:02d}", {"learning_rate": lr, "dropout": dropout}, curve))
    name, lines = _importance(IMPORTANCE_SPACE, trials, str(tmp_path))
    text = "\n".join(lines)
    assert "the 8 trials that reached epoch 6" in text
    first = text.split("): ", 1)[1].split(",")[0]
    assert first.startswith("learning_rate"), text


def test_exported_model_reloads_and_predicts_like_the_trial(exported, finished, flower_root):
    from tuner.data.reader import FlowerData
    from tuner.results.export import _inference_model
    from tuner.results.trials import best_trials, load_trials

    out, _ = exported
    model = keras.models.load_model(out / "model.keras")  # no custom objects
    meta, trials = load_trials(str(finished))
    best = best_trials(meta, trials, 1)[0]
    trial_model = _inference_model(best.values, str(Path(best.trial_dir) / "checkpoint.weights.h5"))
    data = FlowerData(str(flower_root), 32, log=None)
    x = np.concatenate([b.numpy() for b, _ in data.val_dataset(52, cache=False)])
    np.testing.assert_allclose(model.predict(x, verbose=0), trial_model.predict(x, verbose=0), atol=1e-5)
    hp = json.loads((out / "hyperparameters.json").read_text())
    assert hp["optimizer"] == best.values["optimizer"]


def test_submission_has_the_test_ids_in_file_order(exported, flower_root):
    out, _ = exported
    rows = (out / "submission.csv").read_text().splitlines()
    assert rows[0] == "id,label"
    from test_data import ids_in_files
    from tuner.data.reader import FlowerData

    data = FlowerData(str(flower_root), 32, log=None)
    assert [r.split(",")[0] for r in rows[1:]] == ids_in_files(data.files("test"))
    assert all(0 <= int(r.split(",")[1]) < 104 for r in rows[1:])


def test_metrics_match_sklearn_on_the_exported_model(exported, flower_root):
    from tuner.data.reader import FlowerData

    out, _ = exported
    m = json.loads((out / "metrics.json").read_text())
    model = keras.models.load_model(out / "model.keras")
    data = FlowerData(str(flower_root), 32, log=None)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data.val_dataset(52, cache=False)])
    y = np.concatenate(ys).argmax(axis=1)
    p = model.predict(np.concatenate(xs), verbose=0).argmax(axis=1)
    assert m["images"] == 104
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=list(range(104)), average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(float((y == p).mean()))
    assert set(m["per_class_f1"]) == set(CLASS_NAMES)


def test_predict_command_with_the_saved_model(exported, flower_root, tmp_path):
    out, _ = exported
    sub = tmp_path / "s.csv"
    r = run_cli("predict", "--model", str(out / "model.export"), "--data", str(flower_root), "--out", str(sub))
    assert r.returncode == 0, r.stderr
    assert sub.read_text() == (out / "submission.csv").read_text()


def test_no_project_and_no_finished_trial_are_one_line_errors(tmp_path):
    r = run_cli("best", "--project", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no project at" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "flower_tuner.json").write_text(json.dumps({"format": 1, "space": {"train": {"epochs": 1}}}))
    r = run_cli("best", "--project", str(tmp_path / "p"))
    assert r.returncode == 2 and "no finished trial" in r.stderr
    (tmp_path / "p" / "flower_tuner.json").write_text(json.dumps({"format": 99, "space": {}}))
    r = run_cli("status", "--project", str(tmp_path / "p"))
    assert r.returncode == 2 and "incompatible" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------- the same project on another file system (gs:// on Kaggle)


def copy_tree(local: Path, root: str) -> str:
    """A project copied file by file into a tf.io.gfile file system, as
    `gsutil cp -r` would put it on gs://."""
    import tensorflow as tf

    for folder, _, files in os.walk(local):
        rel = os.path.relpath(folder, local)
        target = root if rel == "." else f"{root}/{rel}"
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(folder, name), f"{target}/{name}", overwrite=True)
    return root


@pytest.fixture(scope="module")
def ram_project(finished) -> str:
    """The finished project in TensorFlow's in-memory file system, which
    tf.io.gfile reads like gs:// (one per process: the tests run in-process)."""
    return copy_tree(finished, f"ram://flower-tuner-tests/{finished.parent.name}/proj")


def test_status_and_best_read_a_project_on_another_file_system(ram_project, finished, capsys):
    from tuner.cli import main
    from tuner.results.trials import load_trials

    local_meta, local = load_trials(str(finished))
    meta, remote = load_trials(ram_project)
    assert meta == local_meta
    key = lambda t: (t.trial_id, t.state, t.values, t.metrics, t.best_epoch, t.epochs_done)  # noqa: E731
    assert [key(t) for t in remote] == [key(t) for t in local] and len(remote) == 2
    assert all(t.trial_dir.startswith(f"{ram_project}/trial_") for t in remote)
    assert main(["status", "--project", ram_project]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and not ln.startswith("| trial")]
    assert len(rows) == 2 and all("completed" in ln and "2/2" in ln for ln in rows), out
    assert main(["best", "--project", ram_project, "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "flip left right" in out and f"{ram_project}/trial_" in out


def test_export_from_a_project_on_another_file_system(ram_project, exported, tmp_path, capsys):
    """The weights come from ram:// through a local copy; the export matches
    the one made from the local project."""
    from tuner.cli import main

    out = tmp_path / "from-ram"
    assert main(["best", "--project", ram_project, "--export", str(out)]) == 0, capsys.readouterr().err
    local_out, _ = exported
    keras.models.load_model(out / "model.keras")
    m, ref = (json.loads((d / "metrics.json").read_text()) for d in (out, local_out))
    assert {k: m[k] for k in ("trial", "best_epoch", "images", "accuracy")} == {
        k: ref[k] for k in ("trial", "best_epoch", "images", "accuracy")}
    assert m["macro_f1"] == pytest.approx(ref["macro_f1"], abs=1e-9)
    assert (out / "submission.csv").read_text() == (local_out / "submission.csv").read_text()
    assert f"Project `{ram_project}`" in (out / "report.md").read_text()


def test_predict_and_export_targets_on_another_file_system(ram_project, exported, flower_root, capsys):
    import tensorflow as tf

    from tuner.cli import main

    local_out, _ = exported
    root = f"{ram_project}-models"
    tf.io.gfile.makedirs(root)
    tf.io.gfile.copy(str(local_out / "model.keras"), f"{root}/model.keras", overwrite=True)
    args = ["predict", "--model", f"{root}/model.keras", "--data", str(flower_root), "--out", f"{root}/s.csv"]
    assert main(args) == 0, capsys.readouterr().err
    with tf.io.gfile.GFile(f"{root}/s.csv") as f:
        assert f.read() == (local_out / "submission.csv").read_text()
    capsys.readouterr()
    assert main(["best", "--project", ram_project, "--export", f"{root}/export"]) == 2
    err = capsys.readouterr().err
    assert "writes a local folder" in err and len(err.strip().splitlines()) == 1


def test_status_and_best_on_a_local_project_import_no_tensorflow(finished):
    code = ("import sys\nfrom tuner.cli import main\n"
            "assert main(['status', '--project', sys.argv[1]]) == 0\n"
            "assert main(['best', '--project', sys.argv[1]]) == 0\n"
            "assert 'tensorflow' not in sys.modules, sorted(m for m in sys.modules if 'tensorflow' in m)[:5]\n")
    r = subprocess.run([sys.executable, "-c", code, str(finished)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def _trial_models(finished):
    from tuner.results.export import _inference_model
    from tuner.results.trials import load_trials

    _, trials = load_trials(str(finished))
    return {t.trial_id: _inference_model(t.values, str(Path(t.trial_dir) / "checkpoint.weights.h5"))
            for t in trials}


def test_an_ensemble_at_another_size_reloads_and_averages_its_members(finished, tmp_path):
    """Two trials trained at 32 px in one model taking 48 px images: a
    Resizing in front of each, weights 2:1, built-in layers only."""
    import tensorflow as tf

    from tuner.results.ensemble import ensemble_model, member_at

    models = _trial_models(finished)
    (a, ma), (b, mb) = sorted(models.items())
    combined = ensemble_model([member_at(ma, 48, f"trial_{a}"), member_at(mb, 48, f"trial_{b}")], [2, 1], 48)
    combined.save(tmp_path / "ens.keras")
    loaded = keras.models.load_model(tmp_path / "ens.keras")  # no custom objects
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 3)).astype("float32")
    small = tf.image.resize(x, (32, 32)).numpy()
    want = (2 * ma.predict(small, verbose=0) + mb.predict(small, verbose=0)) / 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-5)


def test_export_with_an_ensemble_says_what_it_chose_and_ships_it(finished, flower_root, tmp_path):
    from tuner.data.reader import FlowerData

    out = tmp_path / "ens"
    r = run_cli("best", "--project", str(finished), "--export", str(out), "--ensemble", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((out / "metrics.json").read_text())["ensemble"]
    cf = info["cross_fitted"]
    assert cf["gain"] == pytest.approx(cf["ensemble_macro_f1"] - cf["best_single_macro_f1"])
    assert ("ensemble of" in r.stdout) and (info["kept"] == (cf["gain"] > 0 and len(info["members"]) > 1))
    assert "## Ensemble" in (out / "report.md").read_text()
    # what ships is the weighted mean of the members named in metrics.json
    models = _trial_models(finished)
    data = FlowerData(str(flower_root), 32, log=None)
    x = np.concatenate([b.numpy() for b, _ in data.val_dataset(52, cache=False)])
    want = sum(m["weight"] * models[m["trial"]].predict(x, verbose=0) for m in info["members"])
    shipped = keras.models.load_model(out / "model.keras")
    np.testing.assert_allclose(shipped.predict(x, verbose=0), want, atol=1e-5)


@pytest.mark.parametrize("args, says", [
    (["--ensemble", "3"], "has 2 finished trial(s); ask for 1 to 2"),
    (["--ensemble", "2", "--no-export"], "add --export DIR"),
    (["--refit", "--no-export"], "--refit chooses what to export; add --export DIR"),
    (["--refit-epochs", "2"], "--refit-epochs sets how the refit runs; add --refit"),
    (["--max-time", "1m"], "--max-time sets how the refit runs; add --refit"),
    (["--refit", "--refit-epochs", "0"], "--refit-epochs: "),
])
def test_bad_ensemble_and_refit_requests_end_in_one_line(finished, tmp_path, args, says):
    if "--no-export" in args:
        cmd = ["best", "--project", str(finished), *[a for a in args if a != "--no-export"]]
    else:
        cmd = ["best", "--project", str(finished), "--export", str(tmp_path / "x"), *args]
    r = run_cli(*cmd)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("train", ["{epochs: 3, batch_per_replica: 8}", "{epochs: 3}"])
def test_search_status_and_export_agree_on_what_an_older_trial_lacks(train):
    """A trial saved before a dimension existed, in a project whose meta may
    lack a train setting too: the status table, the export and the refit it
    feeds use the batch size, epochs and dropout the search uses."""
    import keras_tuner as kt

    from tuner.model.hypermodel import FlowerHyperModel
    from tuner.model.strategy import StrategyInfo
    from tuner.results.export import _own_values
    from tuner.results.trials import TrialInfo, study_row
    from tuner.spaces import parse_space

    space = parse_space(f"method: random\ntrain: {train}\nparameters: {{image_size: 32, weights: none}}\n")
    search = FlowerHyperModel(space, data_factory=None, strategy_info=StrategyInfo(None, "cpu", 2, ()))
    searched = search.values(kt.HyperParameters())
    meta = {"space": space.to_dict()}
    if "batch_per_replica" not in train:  # a project begun before the setting was written
        del meta["space"]["train"]["batch_per_replica"]
    older = {k: v for k, v in searched.items() if k not in ("batch_per_replica", "epochs", "dropout")}
    trial = TrialInfo("0", "completed", older, "unused", replicas=2)

    exported = _own_values(meta, trial)  # what the export builds and the refit trains
    assert exported == searched
    assert study_row(meta, trial)["batch size"] == str(search.global_batch(searched))


def test_tta_views_are_the_image_its_mirror_then_small_fixed_augmentations():
    import tensorflow as tf

    from tuner.results.tta import averaged, small_augmentations, views

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)), tf.float32)
    one, mirror = views(2)
    np.testing.assert_array_equal(one(x), x)
    np.testing.assert_array_equal(mirror(x), x.numpy()[:, :, ::-1])
    four = views(4, {"rotation": 20.0, "flip_left_right": True})
    assert small_augmentations({"rotation": 20.0, "flip_left_right": True}) == {"rotation": 10.0}
    assert small_augmentations({"flip_left_right": True}) == {"zoom": 0.1, "shift": 0.05}
    for v in four[2:]:
        np.testing.assert_array_equal(v(x), v(x))  # fixed seeds: the same view every time
        assert not np.allclose(v(x), x)
    mean = averaged(lambda b: np.asarray(b).mean(axis=(1, 2)), 2)
    np.testing.assert_allclose(mean(x), x.numpy().mean(axis=(1, 2)), rtol=1e-6)  # a mirror keeps the mean


def test_tta_views_of_an_image_do_not_depend_on_its_batch():
    """`predict --tta --batch 7` must show each image the views the export
    judged at its own batch: the same images, split otherwise, same views."""
    import tensorflow as tf

    from tuner.results.tta import averaged, views

    x = tf.constant(np.random.default_rng(1).uniform(0, 255, (6, 16, 16, 3)), tf.float32)
    values = {"rotation": 20.0, "zoom": 0.2, "brightness": 0.2}
    for v in views(5, values)[2:]:
        whole = v(x).numpy()
        assert not np.allclose(whole, x.numpy())
        np.testing.assert_allclose(np.concatenate([v(x[:4]), v(x[4:])]), whole, atol=1e-4)
        np.testing.assert_allclose(v(x[::-1]).numpy()[::-1], whole, atol=1e-4)  # nor on its position
    mean = averaged(lambda b: np.asarray(b).mean(axis=(1, 2)), 5, values)
    np.testing.assert_allclose(np.concatenate([mean(x[:1]), mean(x[1:])]), mean(x), rtol=1e-5)


def test_export_with_tta_records_its_decision_on_both_halves(finished, tmp_path):
    out = tmp_path / "tta"
    r = run_cli("best", "--project", str(finished), "--export", str(out), "--tta", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads((out / "metrics.json").read_text())["tta"]
    assert info["views"] == 2 and len(info["halves"]) == 2
    assert info["kept"] == all(h["tta_macro_f1"] > h["plain_macro_f1"] for h in info["halves"])
    assert "test-time augmentation over 2 views" in r.stdout
    assert "## Test-time augmentation" in (out / "report.md").read_text()


def test_predict_with_tta_writes_every_test_id(exported, flower_root, tmp_path):
    out, _ = exported
    sub = tmp_path / "sub.csv"
    r = run_cli("predict", "--model", str(out / "model.keras"), "--data", str(flower_root), "--out", str(sub),
                "--tta", "3")
    assert r.returncode == 0, r.stderr
    assert len(sub.read_text().splitlines()) == 31  # header + 30 test ids
    r = run_cli("predict", "--model", str(out / "model.keras"), "--data", str(flower_root), "--out", str(sub),
                "--tta", "9")
    assert r.returncode == 2 and "give 1 to 8 views" in r.stderr and len(r.stderr.strip().splitlines()) == 1
