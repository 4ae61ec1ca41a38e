"""`best --export DIR`: everything people made by hand after a run, for the
best trial, measured on the exported model itself so the figures are true for
the file that ships."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner import backend
from tuner.engine import storage
from tuner.errors import DataError, ProjectError
from tuner.data.classes import CLASS_NAMES, NUM_CLASSES


def _inference_model(values: dict[str, Any], weights_path: str, num_classes: int = NUM_CLASSES):
    """The trial's architecture with its best-epoch weights, uncompiled, so
    `model.keras` reloads with plain `keras.models.load_model`. Built with
    weights none: `build_backbone` gives the same layers whatever the weights
    (pretrained EfficientNet's extra input scaling lives in a saved variance),
    so the checkpoint restores the trained network exactly."""
    import keras

    from tuner.model.hypermodel import build_model

    import warnings

    trained = build_model({**values, "weights": "none"}, jit_compile=False, num_classes=num_classes)
    with warnings.catch_warnings():
        # The checkpoint also holds the optimizer's slots, which inference skips.
        warnings.filterwarnings("ignore", message=r".*Skipping variable loading for optimizer")
        trained.load_weights(weights_path)
    return keras.Model(trained.inputs, trained.outputs, name=trained.name)


def on_batch(model) -> Callable:
    """The model's predict_on_batch for tf.data's batches: under JAX they go
    in as numpy (a jitted JAX function takes no TensorFlow tensor)."""
    import keras

    if keras.backend.backend() == "jax":
        return lambda x: model.predict_on_batch(np.asarray(x))
    return model.predict_on_batch


def load_any_model(path: str):
    """A callable images -> probabilities for model.keras or a SavedModel folder."""
    import keras

    if storage.isdir(path):  # tf.saved_model and keras both read gs:// themselves
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        serve = getattr(loaded, "signatures", {}).get("serving_default")
        if serve is None:
            raise ProjectError(f"{path} is a folder but not a SavedModel with a serving_default signature")
        (name, spec), = serve.structured_input_signature[1].items()

        def predict(x):
            return np.asarray(next(iter(serve(**{name: tf.convert_to_tensor(x)}).values())))

        return predict, int(spec.shape[1])
    if not storage.exists(path):
        raise ProjectError(f"model {path} not found; give a model.keras file or a model.export folder")
    model = keras.models.load_model(path)
    return on_batch(model), int(model.input_shape[1])


def predict_split(predict, data, split: str, batch: int):
    """Ordered predictions: (images' labels or ids, probabilities)."""
    import tensorflow as tf

    keys, probs = [], []
    try:
        for x, k in data.decoded(split, ordered=True).batch(batch):
            n = int(x.shape[0])
            if n < batch:  # one batch shape for every call: a short last batch would trace predict again
                x = tf.pad(x, [[0, batch - n], [0, 0], [0, 0], [0, 0]])
            probs.append(np.asarray(predict(tf.cast(x, tf.float32)))[:n])
            keys.append(k.numpy())
    except tf.errors.OpError as e:
        raise data.locate_corruption(split, e) from None
    return np.concatenate(keys), np.concatenate(probs)


def write_submission(ids, labels, path: str) -> None:
    """`id,label` rows in the given order; `path` may be local or gs://."""
    rows = "".join(f"{i.decode() if isinstance(i, bytes) else i},{int(lab)}\n" for i, lab in zip(ids, labels))
    storage.write_text(path, "id,label\n" + rows)


def predict_submission(model_path: str, data_root: str, out: str, batch: int = 64, tta: int = 1) -> int:
    """A submission from any exported model; `tta` views averaged (the
    augmentations for views 3+ come from the hyperparameters.json next to
    the model, when there is one)."""
    from tuner.data.reader import FlowerData
    from tuner.results.tta import averaged, check_views

    check_views(tta)
    predict, size = load_any_model(model_path)
    hp = os.path.join(os.path.dirname(model_path.rstrip("/")), "hyperparameters.json")
    values = json.loads(storage.read_text(hp)) if tta > 2 and storage.exists(hp) else None
    predict = averaged(predict, tta, values)
    data = FlowerData(data_root, size)
    if not data.has_split("test"):
        raise DataError(f"no test records under {data_root} at {size}px; pass the data root that holds test/")
    ids, probs = predict_split(predict, data, "test", batch)
    write_submission(ids, probs.argmax(axis=1), out)
    return len(ids)


def scores(y_true, y_pred, class_names=CLASS_NAMES) -> dict[str, Any]:
    """Macro scores over the data's classes (one per name), as the search's val_f1."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    labels = list(range(len(class_names)))
    kw = dict(labels=labels, average="macro", zero_division=0)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "macro_f1": float(f1_score(y_true, y_pred, **kw)),
        "macro_precision": float(precision_score(y_true, y_pred, **kw)),
        "macro_recall": float(recall_score(y_true, y_pred, **kw)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_class_f1": {class_names[i]: float(per_class[i]) for i in labels},
    }


def plot_trial_curves(meta: dict, trials: list, path: str) -> str:
    """Every trial's val F1 by epoch, with the rungs of early termination."""
    from tuner.engine.checkpoint import read_history
    from tuner.engine.rungs import EarlyTerminate
    from tuner.results import plots

    objective = meta["space"].get("metric", {}).get("name", "val_f1")
    goal = "max" if meta["space"].get("metric", {}).get("goal", "maximize") == "maximize" else "min"
    et = meta["space"].get("early_terminate")
    rungs = EarlyTerminate(**et).rungs(int(meta["space"]["train"]["epochs"])) if et else []
    curves = []
    for t in trials:
        rows = read_history(t.trial_dir)
        state = "stopped" if (t.decision or "").startswith("stopped") else t.state
        curves.append((t.trial_id, [(int(r["epoch"]), r.get(objective)) for r in rows], state))
    return plots.plot_intermediate(curves, path, rungs=rungs, goal=goal)


def _ensemble_lines(info: dict[str, Any] | None) -> list[str]:
    if info is None:
        return []
    cf = info["cross_fitted"]
    lines = ["## Ensemble", ""]
    if info["kept"]:
        lines += ["The exported model averages these trials' softmax outputs:", "",
                  "| trial | weight |", "|---|---|",
                  *[f"| {m['trial']} | {m['weight']:.3f} |" for m in info["members"]], ""]
    else:
        lines += [f"An ensemble of up to {info['asked']} was tried and not kept: {info['why']}.", ""]
    lines += [f"Measured cross-fitted (each half of the validation split predicted by the choice made on the "
              f"other half): ensemble macro F1 {cf['ensemble_macro_f1']:.4f}, best single trial "
              f"{cf['best_single_macro_f1']:.4f}, gain {cf['gain']:+.4f}. The metrics above are the exported "
              "model on the whole split, which the choice has seen.", ""]
    return lines


def _tta_lines(info: dict[str, Any] | None) -> list[str]:
    if info is None:
        return []
    halves = "; ".join(f"half {i + 1}: {h['plain_macro_f1']:.4f} without, {h['tta_macro_f1']:.4f} with"
                       for i, h in enumerate(info["halves"]))
    verdict = ("kept: the metrics above and submission.csv average the views" if info["kept"] else
               "not kept: it was not better on both halves")
    return ["## Test-time augmentation", "",
            f"{info['views']} views of each image (macro F1 {halves}): {verdict}.", ""]


def _importance(meta: dict[str, Any], trials: list, out: str) -> tuple[str, list[str]]:
    """importance.png and its report.md lines, from every trial's best
    objective value up to one epoch (`tuner.results.importance`). Left out
    below MIN_IMPORTANCE_TRIALS trials at that epoch: importances fit to a
    handful of trials rank noise, and a bar chart would make it look like a
    finding."""
    from tuner.engine.checkpoint import read_history
    from tuner.results import importance as imp
    from tuner.results import plots
    from tuner.results.trials import objective_of

    path = os.path.join(out, "importance.png")
    objective, goal = objective_of(meta)
    curves = [[(int(r["epoch"]), r.get(objective)) for r in read_history(t.trial_dir)] if t.has_result else []
              for t in trials]
    need = plots.MIN_IMPORTANCE_TRIALS
    epoch = imp.comparable_epoch(curves, need)
    if epoch is None:
        scored = sum(1 for t in trials if t.has_result and t.score is not None and math.isfinite(t.score))
        if os.path.exists(path):
            os.remove(path)  # an earlier export's plot would contradict this report
        return (f"importance.png left out ({scored} scored trials, needs {need})",
                [f"Hyperparameter importance is left out: {scored} scored trial(s), and an importance evaluator "
                 f"fit to fewer than {need} ranks noise. Run more trials, then export again.", ""])
    trial_scores = [imp.score_at(c, epoch, goal) for c in curves]
    dists = imp.distributions_for(meta["space"].get("parameters", {}))
    importance = plots.plot_importance([dict(t.values) for t in trials], trial_scores, path, dists, goal,
                                       compared_at=f"epoch {epoch}")
    n = sum(1 for s in trial_scores if s is not None)
    text = (", ".join(f"{k} {v:.2f}" for k, v in importance.items())
            or "nothing to attribute (no hyperparameter varies, or every trial scored the same)")
    return "importance.png", ["![importance](importance.png)", "",
                              f"Hyperparameter importance ({imp.EVALUATOR} over the {n} trials that reached epoch "
                              f"{epoch}, each scored by its best {objective} up to that epoch): {text}", ""]


def _own_values(meta: dict[str, Any], trial) -> dict[str, Any]:
    """A trial's dimension values, without Keras Tuner's own `tuner/` keys;
    those a trial saved before they existed lacks at the defaults the search has."""
    from tuner.spaces import with_defaults

    own = {k: v for k, v in trial.values.items() if not k.startswith("tuner/")}
    return with_defaults(own, meta["space"].get("train"))


#: with --refit, the search's model (the one the metrics measure) ships as
SEARCH_MODEL = "search_model.keras"


@dataclass
class RefitRequest:
    """`best --export --refit`: how long to train and how to report it."""

    epochs: int | None = None  # --refit-epochs; default: each trial's best epoch
    stopper: Any = None  # a tuner.engine.stopper.Stopper for --max-time and signals
    log: Callable[[str], None] = print
    strategy: str = "auto"


def _refit_model(project, meta, trials, members: list[tuple[str, float]], root: str, size: int,
                 num_classes: int, request: RefitRequest):
    """The chosen trial(s) trained again on train + val (`tuner.engine.refit`),
    as one model at `size` with the ensemble's weights."""
    from tuner.engine import refit
    from tuner.results.ensemble import ensemble_model, member_at

    by_id = {t.trial_id: t for t in trials}
    models, epochs = [], {}
    for trial_id, _ in members:
        trial = by_id[trial_id]
        plan = refit.plan(project, trial, _own_values(meta, trial), request.epochs)
        path = refit.refit(plan, meta, root, log=request.log, stopper=request.stopper, strategy=request.strategy)
        with storage.local_copy(path) as local:
            models.append(_inference_model(plan.values, local, num_classes))
        epochs[trial_id] = plan.epochs
    info = {"trials": [m[0] for m in members], "epochs": epochs, "data": "train + val", "scored": False,
            "note": f"model.keras was trained on the validation images too and is not scored; the metrics are "
                    f"the search's model ({SEARCH_MODEL}) on the val split"}
    if len(models) == 1:
        return models[0], info
    named = [member_at(m, size, f"refit_{t}") for m, (t, _) in zip(models, members)]
    return ensemble_model(named, [w for _, w in members], size), info


def _saved_model(model, saved: str) -> str:
    """Write the SavedModel; it is TensorFlow's format: under JAX Keras
    converts the model through jax2tf, which needs TensorFlow, and where
    that fails the export says so in one line and goes on (model.keras
    loads under either backend)."""
    import contextlib
    import io

    import keras

    from tuner.backend import installed

    jax = keras.backend.backend() == "jax"
    if jax and not installed("tensorflow"):
        return ("SavedModel: not written (it needs TensorFlow, not installed here; model.keras serves the same "
                "model, or run this export with TensorFlow installed)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(saved)
    except Exception as e:
        if not jax:
            raise
        import shutil

        shutil.rmtree(saved, ignore_errors=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        return (f"SavedModel: not written (the JAX backend's conversion failed: {first}); model.keras serves "
                "the same model, or export again with --backend tensorflow")
    return f"SavedModel: {saved}"


def _refit_lines(info: dict[str, Any] | None) -> list[str]:
    if info is None:
        return []
    runs = ", ".join(f"trial {t} for {e} epochs" for t, e in info["epochs"].items())
    return ["## Refit on train + val", "",
            f"`model.keras` and `model.export/` are the same choice trained again from scratch on train + val "
            f"({runs}), with the search's learning rate epoch by epoch. **That model was not scored**: it has "
            f"seen the validation images. Every figure below is the search's model (`{SEARCH_MODEL}`), and "
            f"`submission.csv` comes from the refit.", ""]


#: how many of the best trials an --ensemble chooses among
CANDIDATES = 8


def _choose_ensemble(meta, trials, best, k: int, root: str, classes, batch: int):
    """(model to export, its description for metrics.json, lines to print).

    Members are the best trials at their best epoch, each run on the best
    trial's image size (resized inside when theirs differs), so the choice is
    measured on exactly the function that ships."""
    from tuner.data.reader import FlowerData
    from tuner.results.ensemble import cross_fitted, ensemble_model, greedy_select, member_at
    from tuner.results.trials import best_trials

    size = int(best.values["image_size"])
    candidates = [t for t in best_trials(meta, trials, max(k, CANDIDATES))
                  if storage.exists(os.path.join(t.trial_dir, "checkpoint.weights.h5"))]
    data = FlowerData(root, size, log=None)
    members, probs, y = [], [], None
    for t in candidates:
        values = _own_values(meta, t)
        with storage.local_copy(os.path.join(t.trial_dir, "checkpoint.weights.h5")) as local:
            model = member_at(_inference_model(values, local, len(classes)), size, f"trial_{t.trial_id}")
        members.append(model)
        labels, p = predict_split(on_batch(model), data, "val", batch)
        if y is None:
            y = labels
        probs.append(p)
    n = len(classes)
    fit = cross_fitted(probs, y, k, n)
    info: dict[str, Any] = {
        "asked": k, "candidates": [t.trial_id for t in candidates],
        "cross_fitted": {"ensemble_macro_f1": fit.ensemble_f1, "best_single_macro_f1": fit.single_f1,
                         "gain": fit.gain, "how": "each half of the val split predicted by the choice made "
                                                 "on the other half"},
    }
    chosen = greedy_select(probs, y, k, n)
    if fit.gain <= 0 or chosen.single:
        why = ("not better than the best single trial on held-out halves" if fit.gain <= 0 else
               "greedy selection on the whole split kept one trial")
        info.update(kept=False, members=[{"trial": best.trial_id, "weight": 1.0}], why=why)
        lines = [f"ensemble of up to {k}: {why} (cross-fitted macro F1 {fit.ensemble_f1:.4f} against "
                 f"{fit.single_f1:.4f}); exporting trial {best.trial_id} alone"]
        return None, info, lines
    idx = list(chosen.weights)
    total = sum(chosen.weights.values())
    info.update(kept=True, members=[{"trial": candidates[i].trial_id, "weight": chosen.weights[i] / total}
                                    for i in idx],
                note="the top-level figures are the exported ensemble on the whole val split, the images it "
                     "was chosen on; the gain is the cross-fitted pair")
    model = ensemble_model([members[i] for i in idx], [chosen.weights[i] for i in idx], size)
    lines = [f"ensemble of {len(idx)} trials ({', '.join(m['trial'] for m in info['members'])}): cross-fitted "
             f"macro F1 {fit.ensemble_f1:.4f} against the best single trial's {fit.single_f1:.4f} "
             f"({fit.gain:+.4f})"]
    return model, info, lines


def _decide_tta(predict, probs, y_true, data, batch: int, n: int, values, num_classes: int):
    """TTA over `n` views is kept only if it scores better on each half of
    the val split (the halves the ensemble is cross-fitted on)."""
    from tuner.results.ensemble import halves, macro_f1
    from tuner.results.tta import averaged

    tpredict = averaged(predict, n, values)
    _, tprobs = predict_split(tpredict, data, "val", batch)
    per = [{"plain_macro_f1": macro_f1(y_true[h], probs[h], num_classes),
            "tta_macro_f1": macro_f1(y_true[h], tprobs[h], num_classes)} for h in halves(len(y_true))]
    kept = all(p["tta_macro_f1"] > p["plain_macro_f1"] for p in per)
    info = {"views": n, "kept": kept, "halves": per, "rule": "kept only if better on each half of the val split"}
    line = (f"test-time augmentation over {n} views: {'kept' if kept else 'not kept'} (macro F1 on the two "
            "halves of val: " + ", ".join(f"{p['plain_macro_f1']:.4f} -> {p['tta_macro_f1']:.4f}" for p in per)
            + ")")
    return (tpredict, tprobs, info, line) if kept else (predict, probs, info, line)


def export_best(project: str, out: str, data_root: str | None = None, batch: int = 64,
                ensemble: int = 1, tta: int = 1, refit: RefitRequest | None = None) -> Iterator[str]:
    """Write the export folder; yields one line per thing written. With
    `ensemble` > 1 the exported model may average several trials
    (`tuner.results.ensemble`); with `tta` > 1 the predictions may average
    several views of each image (`tuner.results.tta`); with `refit` the
    model that ships is the same choice trained again on train + val
    (`tuner.engine.refit`), and the search's model, which is what the
    metrics measure, ships beside it as `search_model.keras`."""
    from sklearn.metrics import classification_report

    from tuner.results import plots
    from tuner.engine.checkpoint import read_history
    from tuner.data.reader import FlowerData
    from tuner.results.trials import best_trials, load_trials, require_finished, study_row, to_csv, to_markdown

    if storage.is_remote(out):
        raise ProjectError(f"--export writes a local folder, not {out}; export to a local folder, "
                           "then copy it (e.g. gsutil -m cp -r DIR gs://...)")
    meta, trials = load_trials(project)
    best = require_finished(meta, trials, project)[0]
    from tuner.results.tta import check_views

    check_views(tta)
    finished = len(best_trials(meta, trials, len(trials)))
    if ensemble < 1 or ensemble > finished:
        raise ProjectError(f"--ensemble {ensemble}: {project} has {finished} finished trial(s); "
                           f"ask for 1 to {finished}")
    weights = os.path.join(best.trial_dir, "checkpoint.weights.h5")
    if not storage.exists(weights):
        raise ProjectError(f"trial {best.trial_id} has no saved weights ({weights}); rerun the search")
    root = data_root or meta.get("data")
    if not root:
        raise ProjectError("the project does not record its data root; pass --data ROOT")
    values = _own_values(meta, best)

    data = FlowerData(root, int(values["image_size"]), log=None)
    classes = data.class_names  # the head's width
    chosen, ensemble_info = None, None
    if ensemble > 1:
        chosen, ensemble_info, lines = _choose_ensemble(meta, trials, best, ensemble, root, classes, batch)
        yield from lines
    if chosen is not None:
        model = chosen
    else:
        with storage.local_copy(weights) as local:  # Keras loads weights from local files only
            model = _inference_model(values, local, len(classes))
    refit_info, shipped = None, model
    if refit is not None:
        members = ([(m["trial"], m["weight"]) for m in ensemble_info["members"]]
                   if ensemble_info and ensemble_info["kept"] else [(best.trial_id, 1.0)])
        shipped, refit_info = _refit_model(project, meta, trials, members, root, int(values["image_size"]),
                                           len(classes), refit)
        yield (f"refit on train + val: trial(s) {', '.join(refit_info['trials'])} for "
               f"{', '.join(str(e) for e in refit_info['epochs'].values())} epoch(s)")
    os.makedirs(out, exist_ok=True)  # only now: a refit stopped before its end leaves no half export
    model_path = os.path.join(out, "model.keras")
    shipped.save(model_path)
    yield f"model: {model_path}" + (" (the refit, trained on train + val: not scored)" if refit_info else "")
    saved = os.path.join(out, "model.export")
    yield _saved_model(shipped, saved)
    scored_path = model_path
    if refit_info:
        scored_path = os.path.join(out, SEARCH_MODEL)
        model.save(scored_path)
        yield f"search model (what the metrics measure): {scored_path}"

    # Measure the file that ships (with --refit: the search's), not the in-memory model.
    predict, size = load_any_model(scored_path)
    data = FlowerData(root, size, log=None)
    y_true, probs = predict_split(predict, data, "val", batch)
    tta_info = None
    if tta > 1:
        predict, probs, tta_info, line = _decide_tta(predict, probs, y_true, data, batch, tta, values, len(classes))
        yield line
    if refit_info:  # the submission comes from the refit, with the views the search's model earned
        from tuner.results.tta import averaged

        predict = load_any_model(model_path)[0]
        if tta_info and tta_info["kept"]:
            predict = averaged(predict, tta, values)
    y_pred = probs.argmax(axis=1)
    metrics = {"trial": best.trial_id, "best_epoch": best.best_epoch, "split": "val",
               "measured_model": os.path.basename(scored_path), "backend": backend.active(),
               "images": int(len(y_true)), **scores(y_true, y_pred, classes)}
    if ensemble_info is not None:
        metrics["ensemble"] = ensemble_info
    if tta_info is not None:
        metrics["tta"] = tta_info
    if refit_info is not None:
        metrics["refit"] = refit_info
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    report = classification_report(y_true, y_pred, labels=list(range(len(classes))), target_names=list(classes),
                                    zero_division=0, digits=4)
    with open(os.path.join(out, "classification_report.txt"), "w") as f:
        f.write(report)
    yield (f"metrics on the whole val split ({len(y_true)} images): macro F1 {metrics['macro_f1']:.4f}, "
           f"precision {metrics['macro_precision']:.4f}, recall {metrics['macro_recall']:.4f}, "
           f"accuracy {metrics['accuracy']:.4f}")

    if data.has_split("test"):
        ids, tprobs = predict_split(predict, data, "test", batch)
        write_submission(ids, tprobs.argmax(axis=1), os.path.join(out, "submission.csv"))
        yield f"submission.csv: {len(ids)} test ids"
    else:
        yield f"no test split under {root}: submission.csv not written (everything else was)"

    with open(os.path.join(out, "hyperparameters.json"), "w") as f:
        json.dump(values, f, indent=1)
    rows = []
    for t in trials:
        r = study_row(meta, t)
        r["state"] = t.state_text()
        rows.append(r)
    with open(os.path.join(out, "trials.csv"), "w") as f:
        f.write(to_csv(rows))
    with open(os.path.join(out, "trials.md"), "w") as f:
        f.write(to_markdown(rows))
    yield f"trials.csv, trials.md: {len(rows)} trials"

    history = read_history(best.trial_dir)
    plots.plot_curves(history, os.path.join(out, "curves.png"))
    pairs = plots.plot_confusion(y_true, y_pred, list(classes), os.path.join(out, "confusion_matrix.png"))
    images = np.stack([x.numpy() for x, _ in data.decoded("val", ordered=True).take(24)])
    plots.plot_predictions(images, y_true[:24], y_pred[:24], list(classes), os.path.join(out, "predictions.png"))
    goal = "max" if meta["space"].get("metric", {}).get("goal", "maximize") == "maximize" else "min"
    plots.plot_search([(t.trial_id, t.score if t.has_result else None) for t in trials],
                      os.path.join(out, "search.png"), goal=goal)
    plot_trial_curves(meta, trials, os.path.join(out, "trials_by_epoch.png"))
    importance_plot, importance_lines = _importance(meta, trials, out)
    yield (f"plots: curves.png, confusion_matrix.png, predictions.png, search.png, trials_by_epoch.png, "
           f"{importance_plot}")

    top = best_trials(meta, trials, 5)
    lines = [
        f"# flower-tuner report: {meta['space'].get('name')}",
        "",
        f"Project `{project}`, data `{root}`. Best trial **{best.trial_id}** ({best.objective} "
        f"{best.score:.4f} at epoch {best.best_epoch} in the search), "
        + (f"in an ensemble of {len(ensemble_info['members'])} trials (see below), "
           if ensemble_info and ensemble_info["kept"] else "")
        + f"exported as `model.keras` and `model.export/` (raw 0..255 RGB {size}x{size} input).",
        "",
        *_refit_lines(refit_info),
        "## Metrics of the " + ("search's model (`search_model.keras`)" if refit_info else "exported model")
        + " on the whole validation split",
        "",
        "| macro F1 | macro precision | macro recall | accuracy | images |",
        "|---|---|---|---|---|",
        f"| {metrics['macro_f1']:.4f} | {metrics['macro_precision']:.4f} | {metrics['macro_recall']:.4f} "
        f"| {metrics['accuracy']:.4f} | {metrics['images']} |",
        "",
        *_ensemble_lines(ensemble_info),
        *_tta_lines(tta_info),
        "## Best trials",
        "",
        to_markdown([study_row(meta, t) for t in top]),
        "## Hyperparameters of the best trial",
        "",
        "```json",
        json.dumps(values, indent=1),
        "```",
        "",
        "## Training curves",
        "",
        "![curves](curves.png)",
        "",
        "## Confusion matrix (row-normalised)",
        "",
        "![confusion](confusion_matrix.png)",
        "",
        "Most confused pairs (true → predicted, count): "
        + ("; ".join(f"{a} → {b} ({n})" for a, b, n in pairs[:8]) or "none"),
        "",
        "## Predictions on validation images",
        "",
        "![predictions](predictions.png)",
        "",
        "## The search",
        "",
        "![search](search.png)",
        "",
        "Every trial's val F1 by epoch (stopped trials end in a red x at their rung, paused ones in a circle):",
        "",
        "![trials by epoch](trials_by_epoch.png)",
        "",
        *importance_lines,
        "## All trials",
        "",
        to_markdown(rows),
        "Weakest classes by F1: " + ", ".join(
            f"{n} {f:.2f}" for n, f in sorted(metrics["per_class_f1"].items(), key=lambda kv: kv[1])[:10]),
        "",
    ]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
    yield f"report: {os.path.join(out, 'report.md')}"
