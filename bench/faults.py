"""Run `python -m tuner ...` with a SIGKILL at one exact point of the code.

A kill from outside lands at a random moment; the windows that matter most
(between two file writes that belong together) are milliseconds wide and a
random kill almost never hits them. This wrapper runs the real CLI in this
process and kills it, with a real SIGKILL, at a named point:

    python bench/faults.py --kill-at save --nth 2 -- search --plain --space S --data D --project P

Points (`--nth N` picks the N-th time the point is reached, default 1):

  save           right after TrialCheckpoint.save returned (files, pointer and
                 history written; the epoch's progress line not yet printed)
  before-pointer inside TrialCheckpoint.save: the new epoch's weights file
                 and history.csv are in place, resume.json not yet switched
  before-history inside TrialCheckpoint.save: the new epoch's weights file
                 is in place, history.csv and resume.json not yet rewritten
  finish         right after TrialCheckpoint.finish (resume.json says done)
                 and before Keras Tuner records the trial as ended
  trial-json     inside Keras Tuner's Oracle.end_trial: trial.json says
                 COMPLETED, oracle.json not yet rewritten
  best-link      inside TrialCheckpoint.save: resume.json names the new
                 epoch, which is the trial's best so far, and the best-epoch
                 file (checkpoint.weights.h5) is not yet linked to it
  rung-decision  right after the oracle answered an epoch's report with a
                 rung decision (pause or stop, saved in oracle.json) and
                 before the tuner acted on it
  report         right after the oracle answered an epoch's report (the
                 checkpoint of that epoch is written; for the trial's last
                 epoch, its build config and `finish` are not)
  json-write:NAME  half-way through the write of Keras Tuner's JSON file
                 NAME (oracle.json, trial.json, tuner0.json): its temporary
                 file holds the first half of the new text

`--signal stop` sends SIGSTOP instead: the process freezes there (its
heartbeat too) until a SIGCONT, like a worker on a machine that hung; this is
how tests/test_distributed.py makes a late worker.

Used by tests/test_faults.py; also handy by hand to look at what a resume
does after each of these kills.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

POINTS = ("save", "before-pointer", "before-history", "best-link", "rung-decision", "report", "finish",
          "trial-json", "json-write")
SIGNALS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}
_signal = signal.SIGKILL


def die(point: str) -> None:
    sys.stdout.write(f"[faults] {signal.Signals(_signal).name} at {point}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), _signal)


class Counter:
    def __init__(self, nth: int):
        self.nth, self.seen = nth, 0

    def hit(self) -> bool:
        self.seen += 1
        return self.seen == self.nth


def install(point: str, nth: int) -> None:
    name = None
    if point.startswith("json-write:"):
        point, name = point.split(":", 1)
    if point not in POINTS:
        raise SystemExit(f"unknown point {point!r}; choose one of {', '.join(POINTS)}")
    count = Counter(nth)

    from tuner.engine import checkpoint

    if point == "save":
        original = checkpoint.TrialCheckpoint.save

        def save(self, model, epoch, state, **kw):
            original(self, model, epoch, state, **kw)
            if count.hit():
                die(f"save (epoch {epoch} of {self.dir})")

        checkpoint.TrialCheckpoint.save = save
    elif point in ("before-pointer", "before-history"):
        original = checkpoint.TrialCheckpoint.save
        real_atomic_write = checkpoint.atomic_write
        target = checkpoint.POINTER if point == "before-pointer" else checkpoint.HISTORY

        def save(self, model, epoch, state, **kw):
            armed = count.hit()

            def atomic_write(path, data):
                if armed and path == f"{self.dir}/{target}":
                    die(f"{point} (epoch {epoch} of {self.dir})")
                real_atomic_write(path, data)

            checkpoint.atomic_write = atomic_write
            try:
                original(self, model, epoch, state, **kw)
            finally:
                checkpoint.atomic_write = real_atomic_write

        checkpoint.TrialCheckpoint.save = save
    elif point == "best-link":
        real_publish = checkpoint.publish

        def publish(source, target):
            if count.hit():
                die(f"best-link ({target} not yet linked to {source})")
            real_publish(source, target)

        checkpoint.publish = publish
    elif point == "rung-decision":
        from tuner.engine import oracles

        original = oracles.BudgetedOracleMixin.update_trial

        def update_trial(self, trial_id, metrics, step=0):
            reply = original(self, trial_id, metrics, step=step)
            if reply.status in ("IDLE", "STOPPED") and count.hit():
                die(f"rung-decision ({'pause' if reply.status == 'IDLE' else 'stop'} trial {trial_id} "
                    f"at epoch {step})")
            return reply

        oracles.BudgetedOracleMixin.update_trial = update_trial
    elif point == "report":
        from tuner.engine import heartbeat

        original = heartbeat.Heartbeat.report

        def report(self, metrics, step):
            reply = original(self, metrics, step)
            if step and count.hit():
                die(f"report (trial {self.trial.trial_id}, epoch {step})")
            return reply

        heartbeat.Heartbeat.report = report
    elif point == "finish":
        original = checkpoint.TrialCheckpoint.finish

        def finish(self, state):
            original(self, state)
            if count.hit():
                die(f"finish ({self.dir})")

        checkpoint.TrialCheckpoint.finish = finish
    elif point == "trial-json":
        # Keras Tuner's trial files go through tuner.engine.checkpoint.atomic_write
        # (tuner/engine/oracles.py): die right after trial.json says COMPLETED.
        real_atomic_write = checkpoint.atomic_write

        def atomic_write(path, data):
            real_atomic_write(path, data)
            text = data.decode() if isinstance(data, bytes) else data
            if os.path.basename(str(path)) == "trial.json" and '"status": "COMPLETED"' in text and count.hit():
                die(f"trial-json ({path})")

        checkpoint.atomic_write = atomic_write
    else:  # json-write: die half-way through writing NAME (its temporary file)
        real_atomic_write = checkpoint.atomic_write

        def atomic_write(path, data):
            if os.path.basename(str(path)) == name and count.hit():
                text = data.decode() if isinstance(data, bytes) else data
                with open(f"{path}.tmp-partial", "w") as f:
                    f.write(text[: len(text) // 2])
                die(f"json-write ({path}, {len(text) // 2} of {len(text)} characters written)")
            return real_atomic_write(path, data)

        checkpoint.atomic_write = atomic_write


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: faults.py --kill-at POINT [--nth N] -- TUNER ARGS...")
    cut = argv.index("--")
    p = argparse.ArgumentParser(prog="faults.py")
    p.add_argument("--kill-at", required=True, help=f"one of {', '.join(POINTS)} (json-write:NAME)")
    p.add_argument("--nth", type=int, default=1, help="the N-th time the point is reached (default 1)")
    p.add_argument("--signal", choices=sorted(SIGNALS), default="kill",
                   help="kill (SIGKILL, default) or stop (SIGSTOP: frozen until a SIGCONT)")
    args = p.parse_args(argv[:cut])
    global _signal
    _signal = SIGNALS[args.signal]
    install(args.kill_at, args.nth)
    from tuner.cli import main as tuner_main

    return tuner_main(argv[cut + 1:])


if __name__ == "__main__":
    raise SystemExit(main())
