"""Fault campaigns: the README's promises tested against real faults.

- SIGKILLs at random moments of a real search, each followed by a resume
  (slow), and SIGKILLs at exact points of the code through
  `bench/faults.py` (slow);
- damaged record files (truncated, garbage, short, a wrong-size image, a
  record without `class`) through `FlowerData.locate_corruption` and
  `python -m tuner check --scan`;
- search-space files fuzzed with hypothesis through `parse_space` and the
  real CLI;
- a full disk while an epoch checkpoint is written: in-process with an
  injected failure, and for real on a small tmpfs (slow).

Tests marked `slow` run with `make faults` (`pytest -m slow`).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import REPO, run_cli, tiny_space
from tuner.data import records
from tuner.errors import SpaceError

FAULTS = REPO / "bench" / "faults.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

TRIAL_RE = re.compile(r"^trial (\S+) \(")  # a trial begins (after restore, before fit)
EPOCH_RE = re.compile(r"^\s+epoch (\d+)/(\d+): ")  # printed after the epoch's checkpoint
END_RE = re.compile(r"^trial (\S+) (completed|failed|invalid)")


# ------------------------------------------------------------------ helpers


def trained_epochs(stdout: str) -> list[tuple[str, int]]:
    """(trial id, epoch) for each `  epoch k/N:` line, attributed to the
    trial whose `trial T (...)` line came last."""
    out, current = [], None
    for line in stdout.splitlines():
        m = TRIAL_RE.match(line)
        if m:
            current = m.group(1)
            continue
        m = EPOCH_RE.match(line)
        if m:
            assert current is not None, f"an epoch line before any trial line: {line!r}"
            out.append((current, int(m.group(1))))
    return out


def history_epochs(trial_dir: Path) -> list[int]:
    path = trial_dir / "history.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def snapshot(project: Path) -> dict[str, dict]:
    """Per trial id: Keras Tuner's status and score, history.csv's text, and
    the epoch resume.json records as saved (all of them once it says done)."""
    out: dict[str, dict] = {}
    for d in sorted(project.glob("trial_*")):
        tid = d.name.split("_", 1)[1]
        info: dict = {"status": None, "score": None, "history": None, "saved": 0, "done": False, "torn": []}
        try:
            if (d / "trial.json").exists():
                t = json.loads((d / "trial.json").read_text())
                info["status"], info["score"] = t.get("status"), t.get("score")
        except ValueError:  # Keras Tuner writes it in place: a kill mid-write tears it
            info["torn"].append(str(d / "trial.json"))
        if (d / "history.csv").exists():
            info["history"] = (d / "history.csv").read_text()
        if (d / "resume.json").exists():
            r = json.loads((d / "resume.json").read_text())  # written atomically: never torn
            info["saved"], info["done"] = int(r.get("epoch", 0)), bool(r.get("done"))
        out[tid] = info
    return out


def retrained_after_save(before: dict[str, dict], stdout: str) -> list[str]:
    """Epochs a run printed (so trained) that resume.json had already recorded
    as saved when the run started. An epoch in progress at a kill was not
    saved, so training it again is fine; this lists only real double work."""
    bad = []
    for tid, k in trained_epochs(stdout):
        b = before.get(tid)
        if b and (b["done"] or k <= b["saved"]):
            saved = "all epochs (done)" if b["done"] else f"epoch {b['saved']}"
            bad.append(f"trial {tid} epoch {k} trained again although resume.json had saved {saved}")
    return bad


def kept_finished(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Trials COMPLETED before a run must stay so, with the same score and history."""
    bad = []
    for tid, b in before.items():
        if b["status"] != "COMPLETED":
            continue
        a = after.get(tid, {})
        if a.get("status") != "COMPLETED" or a.get("score") != b["score"] or a.get("history") != b["history"]:
            bad.append(f"finished trial {tid} changed: status {b['status']} -> {a.get('status')}, "
                       f"score {b['score']} -> {a.get('score')}, history same: {a.get('history') == b['history']}")
    return bad


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


# ======================================================= 1. SIGKILL campaign


class Search:
    """A `python -m tuner search --plain` subprocess; its stdout lines are
    collected by a thread as they come, so the test can act on them."""

    def __init__(self, args: list[str], stderr_path: Path, cmd: list[str] | None = None):
        self.err_path = stderr_path
        self._err = open(stderr_path, "w")
        self.proc = subprocess.Popen(cmd or [sys.executable, "-m", "tuner", "search", "--plain", *args],
                                     cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=self._err, text=True)
        self.lines: list[str] = []
        self.eof = False
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pattern: re.Pattern | None, timeout: float, start: int = 0) -> int | None:
        """Index of the first line from `start` matching `pattern`; None when
        `timeout` passes or the output ends first (pattern None: just wait)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if pattern is not None:
                    for i in range(start, len(self.lines)):
                        if pattern.match(self.lines[i]):
                            return i
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self.cond.wait(min(left, 0.05))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 900) -> int:
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=30)
        self.proc.stdout.close()
        self._err.close()
        return rc

    @property
    def stdout(self) -> str:
        with self.cond:
            return "\n".join(self.lines) + "\n"

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


def wait_for_checkpoint(search: Search, project: Path, before: dict[str, dict], timeout: float) -> bool:
    """Poll resume.json files until one records an epoch beyond `before`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and search.proc.poll() is None:
        for d in project.glob("trial_*"):
            try:
                r = json.loads((d / "resume.json").read_text())
            except (OSError, ValueError):
                continue
            b = before.get(d.name.split("_", 1)[1], {"saved": 0})
            if int(r.get("epoch", 0)) > b["saved"]:
                return True
        time.sleep(0.002)
    return False


#: FAULTS_SEED=N explores another sequence of kill moments (`FAULTS_SEED=7 make faults`).
CAMPAIGN_SEED = int(os.environ.get("FAULTS_SEED", "20250611"))
KILLS = 10
TRIALS, EPOCHS, STEPS = 3, 3, 2
WAIT = 600.0  # seconds any awaited event may take on a loaded 2-core machine


def plan_kill(rng: random.Random, planned: str, before: dict[str, dict]) -> dict:
    """Draw every random number of one kill up front (so the sequence of
    draws does not depend on timing), then fall back to a startup kill when
    the planned moment could finish the whole search before the kill."""
    draw = {"startup_delay": rng.uniform(0.2, 8.0), "first_epoch": rng.random() < 0.5,
            "in_first_epoch": rng.uniform(0.5, 12.0), "in_later_epoch": rng.uniform(0.05, 0.6),
            "after_trial": rng.uniform(0.0, 1.5)}
    saved = sum(EPOCHS if b["done"] else b["saved"] for b in before.values())
    left = TRIALS * EPOCHS - saved  # epochs still to be checkpointed
    unfinished = TRIALS - sum(b["status"] == "COMPLETED" for b in before.values())
    feasible = {"startup": True, "mid-epoch": left >= 3 or (left >= 2 and draw["first_epoch"]),
                "after-checkpoint": left >= 2, "between-trials": unfinished >= 2}
    kind = planned if feasible[planned] else "startup"
    return {"kind": kind, "planned": planned, **draw}


def strike(search: Search, plan: dict, project: Path, before: dict[str, dict]) -> str:
    """Wait for the planned moment, SIGKILL the search; say where it landed."""
    kind = plan["kind"]
    if kind == "startup":  # before the first trial line (nothing trained yet in this run)
        search.wait_for(TRIAL_RE, plan["startup_delay"])
    elif kind == "mid-epoch":
        i = search.wait_for(TRIAL_RE, WAIT)
        if i is not None and plan["first_epoch"]:  # inside the run's first epoch (tracing, steps, validation)
            search.wait_for(EPOCH_RE, plan["in_first_epoch"], start=i + 1)
        elif i is not None:  # inside the epoch after the run's first checkpoint
            j = search.wait_for(EPOCH_RE, WAIT, start=i + 1)
            if j is not None:
                search.wait_for(re.compile(EPOCH_RE.pattern + "|" + END_RE.pattern), plan["in_later_epoch"],
                                start=j + 1)
    elif kind == "after-checkpoint":  # the moment resume.json names a new epoch
        wait_for_checkpoint(search, project, before, WAIT)
    elif kind == "between-trials":  # just after a trial ended: oracle, next trial's build
        i = search.wait_for(END_RE, WAIT)
        if i is not None:
            search.wait_for(None, plan["after_trial"])
    alive = search.proc.poll() is None
    last = next((ln.strip() for ln in reversed(search.lines) if ln.strip()), "(no output yet)")
    search.kill()
    saved = {tid: ("done" if a["done"] else a["saved"]) for tid, a in snapshot(project).items()}
    fallback = f" (planned {plan['planned']})" if plan["planned"] != kind else ""
    return (f"{kind}{fallback}: {'killed' if alive else 'ENDED BEFORE THE KILL'} after `{last[:70]}`; "
            f"saved epochs {saved}")


@pytest.mark.slow
def test_sigkill_campaign_keeps_finished_work_and_never_retrains_a_saved_epoch(flower_root, tmp_path):
    space = tiny_space(tmp_path, epochs=EPOCHS, steps=STEPS)
    project = tmp_path / "proj"
    args = ["--space", str(space), "--data", str(flower_root), "--project", str(project),
            "--max-trials", str(TRIALS)]
    rng = random.Random(CAMPAIGN_SEED)
    kinds = ["startup"] * 2 + ["mid-epoch"] * 3 + ["after-checkpoint"] * 3 + ["between-trials"] * 2
    rng.shuffle(kinds)
    log, problems, trained = [], [], []
    t0 = time.monotonic()
    for n, planned in enumerate(kinds):
        before = snapshot(project)
        plan = plan_kill(rng, planned, before)
        search = Search(args, tmp_path / f"run{n}.err")
        where = strike(search, plan, project, before)
        after = snapshot(project)
        out, err = search.stdout, search.stderr
        (tmp_path / f"run{n}.out").write_text(out)
        log.append(f"kill {n + 1:2d} at {time.monotonic() - t0:6.1f}s: {where}")
        trained += trained_epochs(out)
        if search.proc.returncode != -signal.SIGKILL:
            problems.append(f"run {n} ended by itself (rc {search.proc.returncode}) before kill {n + 1}:\n{out}\n{err[-3000:]}")
        if "Traceback" in err:
            problems.append(f"run {n} printed a traceback:\n{err[-3000:]}")
        problems += [f"run {n}: {p}" for p in retrained_after_save(before, out) + kept_finished(before, after)]
        problems += [f"run {n}: torn {f}" for a in after.values() for f in a["torn"]]
        for tid, a in after.items():
            h = history_epochs(project / f"trial_{tid}")
            if h != list(range(1, len(h) + 1)) or len(h) not in (a["saved"], a["saved"] - 1):
                problems.append(f"run {n}: trial {tid} history.csv epochs {h} with resume.json at epoch {a['saved']}")
        if problems:
            break
    # the final run, uninterrupted, finishes the search
    before = snapshot(project)
    final = run_cli("search", "--plain", *args)
    after = snapshot(project)
    log.append(f"final run at {time.monotonic() - t0:6.1f}s: rc {final.returncode}, trained "
               f"{trained_epochs(final.stdout)}")
    trained += trained_epochs(final.stdout)
    print("\n".join(log))
    print(f"epochs trained in all: {len(trained)} for {TRIALS * EPOCHS} in the search")
    assert not problems, "\n".join(log + problems)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "Traceback" not in final.stderr, final.stderr
    assert f"search done: {TRIALS} trials" in final.stdout, final.stdout
    assert not retrained_after_save(before, final.stdout), "\n".join(log + retrained_after_save(before, final.stdout))
    assert not kept_finished(before, after), kept_finished(before, after)
    # exactly the trials asked for, all finished, each epoch once in its history
    assert sorted(after) == [str(i) for i in range(TRIALS)], sorted(after)
    assert {tid: a["status"] for tid, a in after.items()} == {str(i): "COMPLETED" for i in range(TRIALS)}
    for tid in after:
        assert history_epochs(project / f"trial_{tid}") == list(range(1, EPOCHS + 1)), tid
        assert not (project / f"trial_{tid}" / "resume").exists()  # resume files dropped once done


# ================================================ 1b. kills at exact points

#: (kill point, nth time reached, known bug or None). One trial, 2 epochs.
EXACT_KILLS = [
    ("save", 1, None),
    ("before-pointer", 2, None),
    ("before-history", 2, None),
    ("best-link", 1, None),
    ("finish", 1, None),
    ("trial-json", 1, None),
    ("json-write:trial.json", 2, None),
    ("json-write:oracle.json", 3, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("point,nth,bug", EXACT_KILLS, ids=[f"{p}-{n}" for p, n, _ in EXACT_KILLS])
def test_sigkill_at_an_exact_point_then_resume(flower_root, tmp_path, point, nth, bug):
    space = tiny_space(tmp_path, epochs=2, steps=2)
    project = tmp_path / "proj"
    args = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--max-trials", "1"]
    killed = subprocess.run([sys.executable, str(FAULTS), "--kill-at", point, "--nth", str(nth), "--",
                             "search", "--plain", *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert "[faults] SIGKILL at" in killed.stdout, killed.stdout
    before = snapshot(project)
    r = run_cli("search", "--plain", *args)
    problems = []
    if r.returncode != 0 or "Traceback" in r.stderr:
        problems.append(f"the resume ended with rc {r.returncode}: {r.stderr.strip().splitlines()[-1:]}")
    else:
        after = snapshot(project)
        problems += retrained_after_save(before, r.stdout) + kept_finished(before, after)
        if after.get("0", {}).get("status") != "COMPLETED":
            problems.append(f"trial 0 is {after.get('0', {}).get('status')} after the resume")
        if history_epochs(project / "trial_0") != [1, 2]:
            problems.append(f"history.csv lists epochs {history_epochs(project / 'trial_0')}, not [1, 2]")
        if (project / "trial_0" / "resume").exists():
            problems.append("the resume/ folder of the finished trial was left behind")
        if not (project / "trial_0" / "checkpoint.weights.h5").exists():
            problems.append("the best epoch's weights file is missing (best --export would fail)")
    assert not problems, "\n".join(problems) + "\n" + r.stdout + r.stderr


# ====================================================== 2. damaged records


def _copy_32(flower_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "damaged"
    shutil.copytree(flower_root / "tfrecords-jpeg-32x32", root / "tfrecords-jpeg-32x32")
    return root


def _rewrite(path: Path, change) -> None:
    """Rewrite a record file with `change(index, raw_record)` -> bytes or None (dropped)."""
    import tensorflow as tf

    raw = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    with tf.io.TFRecordWriter(str(path)) as w:
        for i, rec in enumerate(raw):
            new = change(i, rec)
            if new is not None:
                w.write(new)


def _example(rec: bytes):
    import tensorflow as tf

    ex = tf.train.Example.FromString(rec)
    f = ex.features.feature
    label = int(f["class"].int64_list.value[0]) if "class" in f else None
    return f["image"].bytes_list.value[0], f["id"].bytes_list.value[0].decode(), label


def damage(root: Path, how: str) -> tuple[Path, str, str | None]:
    """Damage one file of the 32 px records; (file, expected words, record index or None)."""
    folder = root / "tfrecords-jpeg-32x32"
    if how == "truncated":  # cut in the middle of a record, in train
        victim = sorted((folder / "train").glob("*.tfrec"))[2]
        raw = victim.read_bytes()
        victim.write_bytes(raw[: int(len(raw) * 0.6)])
        return victim, "truncated or corrupted record", None
    if how == "garbage":  # not a TFRecord file at all, in val
        victim = sorted((folder / "val").glob("*.tfrec"))[0]
        victim.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return victim, "truncated or corrupted record", "0"
    if how == "short":  # whole records, one fewer than the name says, in test
        victim = sorted((folder / "test").glob("*.tfrec"))[1]
        n = records.count_from_name(str(victim))
        _rewrite(victim, lambda i, rec: rec if i < n - 1 else None)
        return victim, f"holds {n - 1} records but its name says {n}", None
    if how == "wrong-size":  # one 40x40 image in the 32x32 folder, in train
        victim = sorted((folder / "train").glob("*.tfrec"))[3]
        big = records.encode_jpeg([np.full((40, 40, 3), 128, np.uint8)])[0]

        def change(i, rec):
            if i != 5:
                return rec
            _, id_, label = _example(rec)
            return records.encode_example(big, id_, label)

        _rewrite(victim, change)
        return victim, "the image size differs from its folder's size", "5"
    if how == "missing-class":  # one labelled record without its `class` key, in val
        victim = sorted((folder / "val").glob("*.tfrec"))[2]

        def change(i, rec):
            if i != 7:
                return rec
            jpeg, id_, _ = _example(rec)
            return records.encode_example(jpeg, id_, None)

        _rewrite(victim, change)
        return victim, "lacks Kaggle's keys", "7"
    raise ValueError(how)


DAMAGE = ["truncated", "garbage", "short", "wrong-size", "missing-class"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_record_file_is_named_in_one_line(flower_root, tmp_path, how):
    from tuner.data.reader import FlowerData
    from tuner.errors import DataError

    root = _copy_32(flower_root, tmp_path)
    victim, words, record = damage(root, how)
    # in-process, scanning every split as `check --scan` does
    err = FlowerData(str(root), 32, log=None).locate_corruption()
    assert isinstance(err, DataError)
    msg = str(err)
    assert "\n" not in msg and str(victim) in msg and words in msg, msg
    if record is not None:
        assert f"(record {record})" in msg, msg
    # the real CLI: exit 2, one stderr line naming the file, no traceback
    r = run_cli("check", "--data", str(root), "--image-size", "32", "--scan", timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_line_error(r.stderr)
    assert line.startswith("error: ") and str(victim) in line and words in line, line


# ================================================== 3. fuzzed space files


def _vocabulary():
    from tuner import spaces

    dims = spaces.dimensions()
    keys = (spaces.TOP_KEYS + spaces.TRAIN_KEYS + spaces.METRIC_KEYS + spaces.HYPERBAND_KEYS
            + spaces.SPEC_KEYS + tuple(dims))
    values = set(spaces.METHODS + spaces.METRICS + spaces.GOALS + spaces.DISTRIBUTIONS + spaces.CACHE_VALUES)
    for d in dims.values():
        values.update(d.choices or ())
    values.update({"demo", "none", "imagenet", "weights.h5", "w.keras", "1e-3", "0x1F", "yes", "~"})
    return dims, keys, sorted(values)


DIMS, VOCAB_KEYS, VOCAB_VALUES = _vocabulary()
JUNK_KEYS = st.one_of(st.text(max_size=8), st.integers(-2, 300), st.booleans(), st.none(),
                      st.floats(allow_nan=False))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 1100), st.integers(), st.floats(),
    st.sampled_from([0, 1, 2, 32, 1024, 1025, 0.0, 0.5, 0.9, 1.0, 1e-5, -1.0, 1e309, float("nan")]),
    st.sampled_from(VOCAB_VALUES), st.text(max_size=12),
)
VALUES = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.one_of(st.sampled_from(VOCAB_KEYS), JUNK_KEYS), kids,
                                                max_size=4)), max_leaves=10)
NUMBERS = st.sampled_from([0, 1, 2, 3, 5, 32, 64, 71, 1024, 1025, -1, 0.0, 1e-5, 1e-3, 0.1, 0.5, 0.9, 1.0, 1.5,
                           2.0, 1e309])
PLAUSIBLE = st.one_of(NUMBERS, st.sampled_from(VOCAB_VALUES), st.booleans(), st.none())
RANGE_SPECS = st.builds(
    lambda lo, hi, extra: {"min": lo, "max": hi, **extra}, NUMBERS, NUMBERS,
    st.fixed_dictionaries({}, optional={"distribution": st.one_of(st.sampled_from(
        ("uniform", "log_uniform_values", "int_uniform")), PLAUSIBLE), "q": st.one_of(NUMBERS, PLAUSIBLE)}))
SPECS = st.one_of(
    PLAUSIBLE,  # a bare fixed value
    st.builds(lambda v: {"value": v}, PLAUSIBLE),
    st.builds(lambda vs: {"values": vs}, st.lists(PLAUSIBLE, max_size=4)),
    RANGE_SPECS,
    VALUES,  # anything
    st.dictionaries(st.one_of(st.sampled_from(("value", "values", "min", "max", "distribution", "q")), JUNK_KEYS),
                    st.one_of(SCALARS, st.lists(SCALARS, max_size=4)), max_size=4),
)


def _mostly(valid):
    """`valid` two times in three, anything otherwise: errors deep in the file get reached."""
    return st.one_of(valid, valid, VALUES)


def _section(keys: tuple[str, ...], value=PLAUSIBLE):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.sampled_from(keys), JUNK_KEYS),
                           st.one_of(value, VALUES), max_size=4)


DOCS = st.one_of(
    st.fixed_dictionaries({}, optional={
        "name": _mostly(st.sampled_from(["fz", "my space"])), "description": _mostly(st.text(max_size=20)),
        "method": _mostly(st.sampled_from(("random", "bayes", "hyperband"))),
        "metric": _mostly(_section(("name", "goal"))), "run_cap": _mostly(NUMBERS), "seed": _mostly(NUMBERS),
        "data": _mostly(st.sampled_from(["demo", "/data/flowers"])),
        "train": _mostly(_section(("epochs", "steps_per_epoch", "batch_per_replica", "validation_steps", "cache",
                                   "jit_compile"))),
        "hyperband": _mostly(_section(("factor", "iterations"))),
        "parameters": _mostly(st.dictionaries(st.one_of(st.sampled_from(tuple(DIMS)), st.sampled_from(tuple(DIMS)),
                                                        JUNK_KEYS), SPECS, max_size=6)),
    }).flatmap(lambda d: st.one_of(st.just({}), st.just({}), st.dictionaries(JUNK_KEYS, VALUES, max_size=1))
               .map(lambda j: {**j, **d})),
    VALUES,
)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def _dump(doc, flow) -> str:
    return yaml.dump(doc, Dumper=_NoAliases, default_flow_style=flow, allow_unicode=True, sort_keys=False)


#: Pieces of YAML syntax inserted into valid files, self-referencing aliases
#: and explicit scalar tags included.
SNIPPETS = ["*x", "&x [*x]", "!!float ", "!!int ", "!!bool ", "!!timestamp ", "{", "}", "[", "]", ": ", ":", "- ", "? ", "|\n", ">\n", "'", '"', "\t", "  ", "\n", "#", "&x ",
            "*y", "!!binary ", "!!python/object/apply:os.system ", "!!set ", "!!omap ", "!!str ", "!!null ", "<<: ",
            "%YAML 1.1\n", "---\n", "...\n", "~", ".nan", "1e309", "\x00", "\ufeff", "\x85", "\u2028",
            "\\", "@", "`", "values", "min: ", "max: ", "value: "]
SHIPPED = [p.read_text() for p in sorted((REPO / "search_spaces").glob("*.yaml"))]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SHIPPED))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        what = draw(st.sampled_from(["insert", "delete", "duplicate-line"]))
        if what == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif what == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 30)):]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: i + 1] + lines[i:])
    return text


TEXTS = st.one_of(
    st.builds(_dump, DOCS, st.sampled_from([False, True, None])),
    mutated(),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)
FUZZ_PATH = Path("/tmp/fuzzed spaces/space.yaml")  # a space in it, as users' paths have


def check_space_contract(text: str, path: Path):
    """parse_space returns a Space, or raises a one-line SpaceError that
    starts with the file's path. Anything else escapes and fails the test."""
    from tuner.spaces import Space, parse_space

    try:
        space = parse_space(text, path)
    except SpaceError as e:
        msg = str(e)
        assert "\n" not in msg and len(msg.splitlines()) == 1, repr(msg)
        assert msg.startswith(str(path)), repr(msg)
        return None
    assert isinstance(space, Space)
    json.dumps(space.to_dict())  # a valid space is plain data
    return space


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_fuzzed_space_text_gives_a_space_or_one_line_space_error(text):
    check_space_contract(text, FUZZ_PATH)


@pytest.mark.parametrize("text", ["name: &a [*a]\n", "run_cap: &a [1, *a]\n", "data: &a [*a]\n"],
                         ids=["name", "run_cap", "data"])
def test_self_referencing_yaml_value_is_one_line_error(text):
    check_space_contract(text, FUZZ_PATH)


@pytest.mark.parametrize("text", ["name: !!float abc\n", "seed: !!int abc\n", "name: !!bool abc\n",
                                  "name: !!timestamp abc\n", "seed: !!int\n"],
                         ids=["float", "int", "bool", "timestamp", "empty-int"])
def test_bad_scalar_tag_is_one_line_error(text):
    check_space_contract(text, FUZZ_PATH)


BAD_FILES = st.one_of(st.builds(_dump, DOCS, st.sampled_from([False, True])).map(str.encode), mutated().map(str.encode),
                      st.binary(min_size=1, max_size=120))


@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(BAD_FILES)
def test_fuzzed_bad_space_files_end_the_cli_with_one_line(tmp_path_factory, content):
    from tuner.spaces import load_space

    folder = tmp_path_factory.mktemp("badspace")
    path = folder / "fuzzed.yaml"
    path.write_bytes(content)
    try:
        load_space(path)
        assume(False)  # a valid file would start a search
    except SpaceError:
        pass
    r = run_cli("search", "--plain", "--space", str(path), "--project", str(folder / "proj"), timeout=300)
    assert r.returncode == 2, (content, r.stdout, r.stderr)
    line = one_line_error(r.stderr)
    print(f"{content[:60]!r} -> {line}")
    assert line.startswith(f"error: {path}"), line
    assert not (folder / "proj").exists()  # nothing was set up


# ============================================= 4. a full disk at a checkpoint


class FullDiskGfile:
    """The file system as tuner.engine.checkpoint sees it, except that the armed epoch's
    weights file ends up half written and its write fails the way a full
    disk does (once), before it could be renamed into place."""

    def __init__(self, real, error: BaseException, epoch: int = 2):
        self.real, self.error, self.target = real, error, f"part-epoch-{epoch:04d}.weights.h5"
        self.fired = False

    def GFile(self, name, mode="r"):
        if not self.fired and "w" in mode and str(name).endswith(self.target):
            return _HalfWrite(self, str(name))
        return self.real.GFile(name, mode)

    def __getattr__(self, name):
        return getattr(self.real, name)


class _HalfWrite:
    def __init__(self, disk: FullDiskGfile, path: str):
        self.disk, self.path = disk, path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data) -> None:
        self.disk.fired = True
        Path(self.path).write_bytes(bytes(data)[: len(data) // 2])
        raise self.disk.error


def _disk_full_error(kind: str) -> BaseException:
    import tensorflow as tf

    if kind == "oserror":  # what Python's own writes raise (atomic_write, h5py, numpy)
        return OSError(errno.ENOSPC, "No space left on device")
    # what tf.io.gfile raises on a full local disk (seen on a real tmpfs, see the slow test below)
    return tf.errors.ResourceExhaustedError(None, None, "trial_0/resume/epoch-0002.weights.h5.part; "
                                                        "No space left on device")


# Two searches in this process, each tracing its model: 46 s alone on 2 idle
# cores, 90 s under make test's load, so both run with `make faults`; make test
# keeps the checkpoint's own write-error test (tests/test_checkpoint.py).
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["oserror", "gfile"])
def test_failed_checkpoint_write_keeps_the_previous_checkpoint(flower_root, tmp_path, monkeypatch, capsys, kind):
    import keras

    from tuner.engine import checkpoint
    from tuner.engine.checkpoint import TrialCheckpoint
    from tuner.engine.storage import files
    from tuner.search import SearchOptions, run_search

    epochs = 3
    space = tiny_space(tmp_path, epochs=epochs, steps=2)
    project = tmp_path / "proj"
    opts = SearchOptions(space=str(space), data=str(flower_root), project=str(project), max_trials=1, plain=True)
    at_epoch1: dict = {}
    real_save = TrialCheckpoint.save

    def save(self, model, epoch, state, **kw):
        real_save(self, model, epoch, state, **kw)
        if epoch == 1:
            at_epoch1.update(model=model, weights=[np.array(w) for w in model.get_weights()],
                             optimizer=[np.array(v.numpy()) for v in model.optimizer.variables])

    disk = FullDiskGfile(files(), _disk_full_error(kind))
    monkeypatch.setattr(TrialCheckpoint, "save", save)
    monkeypatch.setattr(checkpoint, "_gfile", lambda: disk)
    bugs = []
    try:
        result = run_search(opts)
        outcome = f"returned {result}"
    except Exception as e:  # what the CLI would turn into its last words
        outcome = f"raised {type(e).__name__}: {e}"
        if not isinstance(e, __import__("tuner.errors").errors.TunerError):
            bugs.append(f"the search ended with an uncaught {type(e).__name__} ({str(e)[:120]}), which the CLI "
                        "prints as a traceback")
    seen = capsys.readouterr()
    assert disk.fired, "the injected failure never happened"
    monkeypatch.undo()
    trial_dir = project / "trial_0"
    status = json.loads((trial_dir / "trial.json").read_text())
    print(f"[{kind}] disk full at epoch 2: search {outcome}; trial 0 {status['status']}: {status.get('message')}")
    # --- what must hold: the pointer still names epoch 1's complete files, and they load
    pointer = json.loads((trial_dir / "resume.json").read_text())
    assert pointer["epoch"] == 1 and not pointer.get("done"), pointer
    assert pointer["weights"] == "resume/epoch-0001.weights.h5"  # optimizer slots included
    assert history_epochs(trial_dir) == [1]
    model = at_epoch1["model"]
    fresh = keras.models.clone_model(model)
    fresh.compile(optimizer=type(model.optimizer).from_config(model.optimizer.get_config()))
    state = TrialCheckpoint(str(trial_dir)).restore(fresh)
    assert state["epoch"] == 1 and [r["epoch"] for r in state["rows"]] == [1]
    for got, want in zip(fresh.get_weights(), at_epoch1["weights"], strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(fresh.optimizer.variables, at_epoch1["optimizer"], strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    # --- what the user sees
    tracebacks = seen.out.count("Traceback") + seen.err.count("Traceback")
    if tracebacks:
        bugs.append(f"{tracebacks} traceback(s) printed (Keras Tuner prints each failed trial's traceback)")
    if status["status"] != "RUNNING":
        bugs.append(f"the trial was marked {status['status']} ({status.get('message')}): a full disk ends the "
                    "trial for good instead of stopping the search with the trial resumable")
    if "out of memory" in seen.out + (status.get("message") or ""):
        bugs.append("a full disk is reported as 'out of memory ...; try a smaller batch or image size' "
                    "(tuner/engine/tuner.py _fit maps every ResourceExhaustedError to out of memory)")
    # --- space is free again: the same search resumes the trial after epoch 1 and completes it
    try:
        again = run_search(opts)
        resumed = capsys.readouterr().out
        print(resumed)
        if "resuming after epoch 1" not in resumed:
            bugs.append("the next run did not resume trial 0 after epoch 1")
        if again.trials != {"0": "COMPLETED"}:
            bugs.append(f"after the next run the trials are {again.trials}")
        if trained_epochs(resumed) != [("0", k) for k in range(2, epochs + 1)]:
            bugs.append(f"the next run trained {trained_epochs(resumed)}")
        if history_epochs(trial_dir) != list(range(1, epochs + 1)):
            bugs.append(f"history.csv then lists {history_epochs(trial_dir)}")
    except Exception as e:
        bugs.append(f"the next run raised {type(e).__name__}: {str(e)[:160]}")
    assert not bugs, "; ".join(bugs)


def _mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


def _resize_tmpfs(where: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True, capture_output=True)


@pytest.mark.slow
def test_full_disk_for_real_on_a_small_tmpfs(flower_root, tmp_path):
    """The project on a tmpfs that fills up while epoch 2's checkpoint is
    written: what the user sees, what is kept, and whether the search goes
    on once space is freed. Needs root and `mount -t tmpfs` (else skipped)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 400 * 2**20):
        pytest.skip("cannot mount a tmpfs here (needs root and mount)")
    try:
        space = tiny_space(tmp_path, epochs=3, steps=2)
        project = disk / "proj"
        args = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--max-trials", "2"]
        # 1. epoch 1 of trial 0 is checkpointed, then the search stops (SIGTERM stops at the epoch end)
        first = Search(args, tmp_path / "first.err")
        assert first.wait_for(TRIAL_RE, WAIT) is not None, first.stdout + first.stderr
        first.proc.send_signal(signal.SIGTERM)
        assert first.finish() == 143, first.stdout + first.stderr
        trial_dir = project / "trial_0"
        assert json.loads((trial_dir / "resume.json").read_text())["epoch"] == 1
        # 2. the disk is then nearly full: half of epoch 1's weight file is left free
        used = shutil.disk_usage(disk).used
        half = (trial_dir / "resume" / "epoch-0001.weights.h5").stat().st_size // 2
        _resize_tmpfs(disk, used + half)
        full = run_cli("search", "--plain", *args)
        print(f"disk full: rc {full.returncode}\n{full.stdout}\n{full.stderr[-2500:]}")
        # what must hold: the epoch-1 checkpoint is untouched
        pointer = json.loads((trial_dir / "resume.json").read_text())
        assert pointer["epoch"] == 1 and pointer["weights"] == "resume/epoch-0001.weights.h5", pointer
        assert (trial_dir / pointer["weights"]).stat().st_size > 0
        assert history_epochs(trial_dir) == [1]
        bugs = []
        if full.returncode == 0:
            bugs.append("the search said it finished although no checkpoint could be written")
        if "Traceback" in full.stderr or len(full.stderr.strip().splitlines()) != 1:
            last = (full.stderr.strip().splitlines() or ["(nothing)"])[-1]
            bugs.append(f"it did not end in one line but with a traceback ending in `{last[:200]}`")
        if "out of memory" in full.stdout + full.stderr:
            bugs.append("the full disk was reported as 'out of memory; try a smaller batch or image size'")
        leftovers = sorted(p.name for p in (trial_dir / "resume").iterdir() if p.name.startswith("part-"))
        if leftovers:
            bugs.append(f"the half-written {leftovers} stay in resume/ and keep the space used")
        status = json.loads((trial_dir / "trial.json").read_text())["status"]
        if status != "RUNNING":
            bugs.append(f"trial 0 was marked {status}, so it is never resumed")
        # 3. space is freed: the same command resumes trial 0 after epoch 1 and finishes the search
        _resize_tmpfs(disk, 400 * 2**20)
        freed = run_cli("search", "--plain", *args)
        print(f"space freed: rc {freed.returncode}\n{freed.stdout}\n{freed.stderr[-2500:]}")
        if freed.returncode != 0:
            last = (freed.stderr.strip().splitlines() or ["(nothing)"])[-1]
            bugs.append(f"after freeing space the resume fails: rc {freed.returncode}, `{last[:200]}`")
        else:
            if "trial 0 (1 of 2), resuming after epoch 1" not in freed.stdout:
                bugs.append("after freeing space, trial 0 was not resumed after epoch 1")
            if [h for h in (history_epochs(project / f"trial_{t}") for t in "01")] != [[1, 2, 3]] * 2:
                bugs.append("after freeing space the trials' histories are not [1, 2, 3]")
        assert not bugs, "; ".join(bugs)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_late_worker_never_deletes_the_new_owners_epoch_files(tmp_path):
    """Two workers save the same trial (the first one's lease ran out while
    it trained): each saves under its own names and removes only its own
    previous file, so the new owner's checkpoint survives the late one."""
    import keras

    from tuner.engine.checkpoint import TrialCheckpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    trial = tmp_path / "trial_0"
    late, owner = TrialCheckpoint(str(trial), owner="w1"), TrialCheckpoint(str(trial), owner="w2")
    late.save(model, 1, {"rows": [{"epoch": 1}]})
    late.flush()
    owner.restore(model)  # w2 takes the trial over after epoch 1
    owner.save(model, 2, {"rows": [{"epoch": 1}, {"epoch": 2}]})
    owner.save(model, 3, {"rows": [{"epoch": e} for e in (1, 2, 3)]})
    owner.flush()
    late.save(model, 2, {"rows": [{"epoch": 1}, {"epoch": 2}]})  # w1 wakes up after its epoch 2
    late.flush()
    files = sorted(p.name for p in (trial / "resume").iterdir())
    assert "w2-epoch-0003.weights.h5" in files, files  # the pointer w1 read named it
    assert "w2-epoch-0002.weights.h5" not in files  # each removes its own previous one
    assert "w1-epoch-0001.weights.h5" not in files
    owner.save(model, 4, {"rows": [{"epoch": e} for e in (1, 2, 3, 4)]})
    owner.flush()
    assert sorted(p.name for p in (trial / "resume").iterdir()) == [
        "w1-epoch-0002.weights.h5", "w2-epoch-0004.weights.h5"]  # w1's last one goes with finish
    owner.finish({})
    assert not (trial / "resume").exists()
