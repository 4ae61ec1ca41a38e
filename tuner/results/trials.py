"""Reading a project's trials back: states, metrics and the study-style table
people used to fill in by hand. Reads files only, through `engine.storage`:
a local project without TensorFlow, so `status` and `best` answer quickly
and work while a search runs; a `gs://` one through `tf.io.gfile`."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from typing import Any

from tuner.errors import ProjectError
from tuner.engine import ranking, storage
from tuner.engine.project import ProjectLock, require_project
from tuner.spaces import train_settings, with_defaults
from tuner.spaces.conditions import is_active

STUDY_COLUMNS = ("trial", "model", "callback", "epochs", "image preparation", "steps per epoch", "image size",
                 "batch size", "optimizer", "learning rate", "recall", "precision", "F1", "best epoch")


@dataclass
class TrialInfo:
    trial_id: str
    state: str  # running | completed | paused | failed | interrupted | pending
    values: dict[str, Any]
    trial_dir: str
    reason: str | None = None
    epochs_done: int = 0
    epochs_planned: int | None = None
    best_epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # at the best epoch
    seconds: float = 0.0
    replicas: int = 1
    worker: str | None = None
    decision: str | None = None  # early termination: "stopped at epoch 2 (rung 1)", "paused at rung 1 (epoch 2)"
    dtype: str | None = None  # the Keras dtype policy it trained in, as recorded at its last epoch
    backend: str | None = None  # the Keras backend of its last epoch (tensorflow | jax); None before it was recorded
    objective: str = "val_f1"  # the space's metric: what `score` is

    @property
    def score(self) -> float | None:
        """Its best epoch's objective value (`best_epoch` says which epoch)."""
        return self.metrics.get(self.objective)

    @property
    def has_result(self) -> bool:
        """Finished, stopped early, paused at a rung, or cut by --max-time
        (or still running) after some epochs: its best finished epoch's
        weights and metrics are saved and count (see `engine.ranking`)."""
        return ranking.has_result(self.state, self.best_epoch)

    def state_text(self) -> str:
        if self.decision:
            return self.decision
        if self.state == "interrupted":
            return f"interrupted at epoch {self.epochs_done}"
        if self.state == "failed" and self.reason:
            return f"failed: {self.reason}"
        if self.state == "running":
            return f"running (epoch {self.epochs_done} done)"
        return self.state


def _read_json(path: str) -> dict | None:
    data = storage.read_json(path)
    return data if isinstance(data, dict) else None


def _history(trial_dir: str) -> list[dict[str, float | None]]:
    path = os.path.join(trial_dir, "history.csv")
    try:
        rows = list(csv.DictReader(io.StringIO(storage.read_text(path))))
    except OSError:
        return []
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]


def objective_of(meta: dict[str, Any]) -> tuple[str, str]:
    """(metric name, "max" or "min"): what trials are ranked by."""
    metric = meta["space"].get("metric", {})
    return metric.get("name", "val_f1"), "max" if metric.get("goal", "maximize") == "maximize" else "min"


def load_trials(project: str) -> tuple[dict[str, Any], list[TrialInfo]]:
    """(project meta, trials in start order)."""
    meta = require_project(project)
    objective, direction = objective_of(meta)
    locked = ProjectLock.held(project)
    from tuner.engine.leases import read_leases

    leases = read_leases(project)
    from tuner.engine.rungs import describe_decision

    oracle = _read_json(os.path.join(project, "oracle.json")) or {}
    decisions = ((oracle.get("flower_tuner") or {}).get("early_terminate") or {}).get("decisions", {})
    # While a search holds the lock, the trials its oracle handed out are the
    # ones being trained; the others wait (paused, or interrupted earlier).
    ongoing = set((oracle.get("ongoing_trials") or {}).values()) if locked else set()
    trials = []
    names = sorted((n for n in storage.listdir(project) if n.startswith("trial_")), key=lambda n: (len(n), n))
    for name in names:
        tdir = os.path.join(project, name)
        t = _read_json(os.path.join(tdir, "trial.json"))
        if t is None:
            continue
        pointer = _read_json(os.path.join(tdir, "resume.json")) or {}
        rows = _history(tdir)
        status = t.get("status", "RUNNING")
        rung = decisions.get(t["trial_id"]) or {}
        decision = describe_decision(rung)
        state = {"COMPLETED": "completed", "FAILED": "failed", "INVALID": "failed"}.get(status)
        if state is None and decision and decision.startswith("paused"):
            state = "paused"  # also before its run has ended (trial.json still says RUNNING)
        elif (state is None and status == "IDLE" and rung.get("state") == "promoted"
              and t["trial_id"] not in ongoing):
            # won its rung, waits in the oracle's queue to go on from there
            state, decision = "paused", f"promoted at rung {rung['rung'] + 1} (epoch {rung['epoch']}): goes on next"
        if state not in ("completed", "paused"):
            decision = None
        if state is None:
            state = "running" if t["trial_id"] in ongoing else ("interrupted" if rows else "pending")
        reason = t.get("message") if state == "failed" else None
        if reason:
            reason = reason.strip().splitlines()[-1]
        info = TrialInfo(
            trial_id=t["trial_id"], state=state, values=t.get("hyperparameters", {}).get("values", {}),
            trial_dir=tdir, reason=reason, epochs_done=len(rows),
            seconds=sum(r.get("seconds") or 0.0 for r in rows),
            replicas=int(pointer.get("replicas", 1)),
            worker=(leases.get(t["trial_id"]) or {}).get("worker") or pointer.get("worker"),
            decision=decision, dtype=pointer.get("precision"), objective=objective,
            backend=pointer.get("backend"),
        )
        if info.worker == "tuner0":  # a one-machine search: no worker to name
            info.worker = None
        info.epochs_planned = int(info.values.get("tuner/epochs")
                                  or with_defaults(info.values, meta["space"].get("train"))["epochs"])
        best = ranking.best_row(rows, objective, direction)
        if best is not None:
            info.best_epoch = int(best["epoch"])
            info.metrics = {k: v for k, v in best.items() if v is not None and k not in ("epoch", "seconds")}
        trials.append(info)
    return meta, trials


def varying_names(meta: dict[str, Any]) -> list[str]:
    params = meta["space"].get("parameters", {})
    return [n for n, spec in params.items() if "value" not in spec]


def best_trials(meta: dict[str, Any], trials: list[TrialInfo], k: int = 1) -> list[TrialInfo]:
    """The `k` best trials with a score, best first (`engine.ranking.rank`)."""
    return [t for t in ranking.rank(trials, objective_of(meta)[1]) if t.score is not None][:k]


def image_preparation(values: dict[str, Any]) -> str:
    """The augmentations a trial used, in words (the study's 'image preparation')."""
    from tuner.data.augment import AUGMENTATIONS

    parts = []
    for name in AUGMENTATIONS:
        v = values.get(name)
        if v is True:
            parts.append(name.replace("_", " "))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            parts.append(f"{name} {v:g}")
    return ", ".join(parts) or "none"


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _epoch(t: TrialInfo) -> str:
    """The epoch its scores were reached at: they are that epoch's, not the last one's."""
    return "-" if t.best_epoch is None else str(t.best_epoch)


def study_row(meta: dict[str, Any], t: TrialInfo) -> dict[str, str]:
    train = train_settings(meta["space"].get("train"))
    v = with_defaults(t.values, train)  # what the trial trains with, an older trial's too
    steps = train["steps_per_epoch"] or "full"
    batch = int(v["batch_per_replica"]) * t.replicas
    return {
        "trial": t.trial_id, "model": str(v["backbone"]), "callback": str(v["callback"]),
        "epochs": str(t.epochs_done), "image preparation": image_preparation(v), "steps per epoch": str(steps),
        "image size": str(v["image_size"]), "batch size": str(batch), "optimizer": str(v["optimizer"]),
        "learning rate": f"{float(v['learning_rate']):.3g}",
        "recall": _f(t.metrics.get("val_recall")), "precision": _f(t.metrics.get("val_precision")),
        "F1": _f(t.metrics.get("val_f1")), "best epoch": _epoch(t),
    }


def status_row(meta: dict[str, Any], t: TrialInfo) -> dict[str, str]:
    row = {"trial": t.trial_id, "state": t.state_text()}
    used = with_defaults(t.values, meta["space"].get("train"))
    for name in varying_names(meta):
        val = t.values.get(name)
        # the precision dimension is shown as `dtype`: `precision` is the metric's column
        row["dtype" if name == "precision" else name] = (
            "-" if not is_active(name, used)  # a value the trial's model never read
            else f"{val:.3g}" if isinstance(val, float) else str(val))
    if t.dtype:
        row["dtype"] = t.dtype  # what "auto" became on the machine that trained it
    row.update({
        "epochs": f"{t.epochs_done}/{t.epochs_planned}" if t.epochs_planned else str(t.epochs_done),
        "val F1": _f(t.metrics.get("val_f1")), "best epoch": _epoch(t),
        "precision": _f(t.metrics.get("val_precision")), "recall": _f(t.metrics.get("val_recall")),
        "time": _duration(t.seconds),
    })
    if t.worker:
        row["worker"] = t.worker
    return row


def backend_line(trials: list[TrialInfo]) -> str | None:
    """`status`'s line saying which Keras backend trained which trials
    (None when no trial recorded one)."""
    by: dict[str, list[str]] = {}
    for t in trials:
        if t.backend:
            by.setdefault(t.backend, []).append(t.trial_id)
    if not by:
        return None
    if len(by) == 1:
        return f"backend: {next(iter(by))}"
    return "backend: " + "; ".join(f"{b} (trial{'s' if len(ids) > 1 else ''} {', '.join(ids)})"
                                   for b, ids in sorted(by.items()))


def trial_record(t: TrialInfo) -> dict[str, Any]:
    """One trial with typed values, for scripts (`--format json`, the Python
    API's `Trials`): its hyperparameters under "values"."""
    return {"trial": t.trial_id, "state": t.state_text(), "val_f1": t.metrics.get("val_f1"),
            "val_precision": t.metrics.get("val_precision"), "val_recall": t.metrics.get("val_recall"),
            "best_epoch": t.best_epoch, "epochs": t.epochs_done, "epochs_planned": t.epochs_planned,
            "seconds": round(t.seconds, 1), "dtype": t.dtype, "backend": t.backend, "worker": t.worker,
            "decision": t.decision,
            "trial_dir": t.trial_dir, "values": dict(t.values)}


def best_id(meta: dict[str, Any], trials: list[TrialInfo]) -> str | None:
    """The best finished trial's id (the row a table marks), if any."""
    top = best_trials(meta, trials, 1)
    return top[0].trial_id if top else None


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def to_markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no trials)\n"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(r.get(c, "").replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def to_csv(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


#: what `status` and `best` print with --format
FORMATS = ("auto", "table", "md", "csv", "json")
_STATE_STYLE = (("completed", "green"), ("running", "cyan"), ("paused", "blue"), ("promoted", "blue"),
                ("stopped", "magenta"), ("interrupted", "yellow"), ("failed", "red"), ("pending", "dim"))


def rich_table(rows: list[dict[str, str]], title: str, best: str | None = None):
    """A rich Table: the state in colour, the best trial's row bold with a star."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in rows[0] if rows else ["trial"]:
        numeric = col in ("val F1", "F1", "best epoch", "precision", "recall", "epochs", "time", "learning rate",
                          "learning_rate")
        table.add_column(col, overflow="fold", justify="right" if numeric else "left")
    for r in rows:
        cells = list(r.values())
        if "state" in r:
            style = next((st for word, st in _STATE_STYLE if r["state"].startswith(word)), "")
            cells[list(r).index("state")] = f"[{style}]{r['state']}[/]" if style else r["state"]
        mine = best is not None and r.get("trial") == best
        if mine:
            cells[0] = f"★ {cells[0]}"
        table.add_row(*cells, style="bold" if mine else None)
    return table


def print_table(rows: list[dict[str, str]], title: str, fmt: str = "auto", best: str | None = None,
                records: list[dict[str, Any]] | None = None, console=None) -> None:
    """`fmt`: auto (a rich table on a terminal, markdown otherwise), table,
    md, csv, json (`records` when given: typed values, for scripts)."""
    import json
    import sys

    from rich.console import Console

    console = console or Console(highlight=False)
    if fmt == "auto":
        fmt = "table" if console.is_terminal else "md"
    if fmt == "json":
        sys.stdout.write(json.dumps(records if records is not None else rows, indent=1, default=str) + "\n")
    elif fmt == "csv":
        sys.stdout.write(to_csv(rows))
    elif fmt == "md":
        print(title)
        print(to_markdown(rows), end="")
    else:
        console.print(rich_table(rows, title, best))


def require_finished(meta: dict[str, Any], trials: list[TrialInfo], project: str) -> list[TrialInfo]:
    best = best_trials(meta, trials, 1)
    if not best:
        raise ProjectError(f"no finished trial in {project} yet; run or resume `python -m tuner search` first")
    return best
