"""What a running search shows: trial n of N with its hyperparameters, an
epoch bar, F1 as it goes and the best so far (rich on a terminal and in a
notebook, plain lines otherwise, so logs of batch jobs stay readable)."""

from __future__ import annotations

import math
import sys
import time
from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _metric(logs: dict, key: str) -> str:
    v = logs.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{float(v):.4f}"


def _at(epoch: int | None, before: str, after: str = "") -> str:
    return "" if epoch is None else f"{before}{epoch}{after}"


class Progress:
    def __init__(self, console=None, plain: bool | None = None):
        from rich.console import Console

        self.console = console or Console(stderr=False, highlight=False)
        # A notebook gets rich's live display too (it updates in place; rich
        # draws it through ipywidgets, which Kaggle and Colab have).
        live = self.console.is_terminal or self.console.is_jupyter
        self.plain = (not live) if plain is None else plain
        self._bar = None
        self._task = None
        self.best: float | None = None
        self.best_trial: str | None = None
        self.best_epoch: int | None = None

    def log(self, text: str) -> None:
        if self.plain:
            print(text, flush=True)
        else:
            self.console.print(text)

    def search_begin(self, space_name: str, method: str, strategy: str, project: str,
                     done: int, total: int | None, data_root: str) -> None:
        left = f"{done} of {total} trials done" if total else f"{done} trials done"
        self.log(f"search '{space_name}' ({method}) on {strategy}; data {data_root}; project {project}; {left}")

    def trial_begin(self, trial_id: str, number: int | None, total: int | None,
                    values: dict[str, Any], epochs: int, resumed_at: int, parent: str | None = None) -> None:
        hps = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        where = f"{number} of {total}" if number and total else (str(number) if number else "from the chief")
        if parent and resumed_at:
            again = f", continuing trial {parent}'s weights after epoch {resumed_at}"
        else:
            again = f", resuming after epoch {resumed_at}" if resumed_at else ""
        self.log(f"trial {trial_id} ({where}){again}: {hps}")
        if not self.plain:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

            self._bar = Bar(
                TextColumn("  epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("epochs", total=epochs, completed=resumed_at, info="")

    def epoch_end(self, epoch: int, epochs: int, logs: dict[str, Any], seconds: float) -> None:
        line = (f"epoch {epoch}/{epochs}: loss {_metric(logs, 'loss')} val_loss {_metric(logs, 'val_loss')} "
                f"val_f1 {_metric(logs, 'val_f1')} val_precision {_metric(logs, 'val_precision')} "
                f"val_recall {_metric(logs, 'val_recall')} ({seconds:.1f}s)")
        if self._bar is not None:
            best = f" | best {self.best:.4f}" if self.best is not None else ""
            self._bar.update(self._task, completed=epoch, info=f"val_f1 {_metric(logs, 'val_f1')}{best}")
            self._bar.console.print("  " + line)
        else:
            self.log("  " + line)

    def trial_end(self, trial_id: str, status: str, score: float | None, message: str | None = None,
                  goal: str = "max", epoch: int | None = None,
                  best: tuple[str, float, int | None] | None = None) -> None:
        """`score` is the trial's best epoch's (`epoch`); `best` (trial id,
        score, epoch) the search's best so far as `engine.ranking` ranks the
        oracle's trials. Without it (a worker sees only its own trials) the
        best of the trials that ended here."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if best is not None:
            self.best_trial, self.best, self.best_epoch = best
        elif score is not None and not math.isnan(score):
            better = self.best is None or (score > self.best if goal == "max" else score < self.best)
            if better:
                self.best, self.best_trial, self.best_epoch = score, trial_id, epoch
        best_text = (f"; best so far {self.best:.4f} (trial {self.best_trial}{_at(self.best_epoch, ', epoch ')})"
                     if self.best is not None else "")
        why = f": {message}" if message else ""
        shown = f" {score:.4f}{_at(epoch, ' (best epoch ', ')')}" if score is not None else ""
        self.log(f"trial {trial_id} {status.lower()}{shown}{why}{best_text}")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def wall() -> float:
    return time.monotonic()


def is_terminal() -> bool:
    return sys.stdout.isatty()
