"""A chief and two workers on loopback, through Keras Tuner's own gRPC
oracle service, with leases: real processes, a real kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli, tiny_space
from test_search import history_epochs, trial_statuses, wait_for_epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen([sys.executable, "-m", "tuner", "search", "--plain", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def trials_run_by(log: Path) -> list[str]:
    return re.findall(r"^trial (\d+) \(", log.read_text(), flags=re.M)


@pytest.fixture
def cluster(flower_root, tmp_path):
    procs: list[subprocess.Popen] = []

    def start(space: Path, lease: str, trials: int):
        port = free_port()
        project = tmp_path / "shared-project"
        common = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--lease", lease]
        chief = launch([*common, "--chief", f"127.0.0.1:{port}", "--max-trials", str(trials)], tmp_path / "chief.log")
        procs.append(chief)
        time.sleep(1.0)
        workers = {}
        for name in ("w1", "w2"):
            workers[name] = launch([*common, "--connect", f"127.0.0.1:{port}", "--worker-id", name],
                                   tmp_path / f"{name}.log")
            procs.append(workers[name])
        return project, chief, workers

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_chief_and_two_workers_run_each_trial_once(cluster, tmp_path):
    space = tiny_space(tmp_path, epochs=2, steps=2)
    project, chief, workers = cluster(space, lease="5m", trials=3)
    assert chief.wait(timeout=600) == 0, (tmp_path / "chief.log").read_text()
    for w in workers.values():
        assert w.wait(timeout=60) == 0
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    runs = trials_run_by(tmp_path / "w1.log") + trials_run_by(tmp_path / "w2.log")
    assert sorted(runs) == ["0", "1", "2"], runs  # no trial run twice
    for tid in ("0", "1", "2"):
        assert history_epochs(project / f"trial_{tid}") == [1, 2]
    # The chief made a token, owner-only, and told the workers' line; the
    # workers, given none, read it from the shared project.
    token_file = project / "chief.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert f"workers: TUNER_TOKEN={token_file.read_text().strip()} python -m tuner search --connect 127.0.0.1:" \
        in (tmp_path / "chief.log").read_text()
    # status names the worker that ran each trial
    r = run_cli("status", "--project", str(project))
    assert r.returncode == 0 and "worker" in r.stdout and ("w1" in r.stdout or "w2" in r.stdout)


@pytest.mark.slow  # ~3 min of three processes; tests/test_oracles.py checks lease expiry in-process
def test_killed_worker_trial_is_finished_by_the_other_from_its_epoch(cluster, tmp_path):
    space = tiny_space(tmp_path, epochs=3, steps=3)
    project, chief, workers = cluster(space, lease="60s", trials=2)
    # find who runs trial 0 and kill it after its first epoch
    t0 = time.time()
    while time.time() - t0 < 300:
        owners = {n: trials_run_by(tmp_path / f"{n}.log") for n in workers}
        victim = next((n for n, runs in owners.items() if "0" in runs), None)
        if victim:
            break
        time.sleep(0.2)
    assert victim, "no worker took trial 0"
    wait_for_epoch(project, "0", 1, workers[victim])
    workers[victim].send_signal(signal.SIGKILL)
    workers[victim].wait()
    survivor = next(n for n in workers if n != victim)
    assert chief.wait(timeout=600) == 0, (tmp_path / "chief.log").read_text()
    assert workers[survivor].wait(timeout=60) == 0
    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED"}
    surv_log = (tmp_path / f"{survivor}.log").read_text()
    assert re.search(r"^trial 0 \(.*resuming after epoch 1", surv_log, flags=re.M), surv_log
    assert history_epochs(project / "trial_0") == [1, 2, 3]
    assert history_epochs(project / "trial_1") == [1, 2, 3]
    assert "lease of trial 0 held by " + victim in (tmp_path / "chief.log").read_text()
    assert json.loads((project / "trial_0" / "resume.json").read_text())["worker"] == survivor


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    t0 = time.time()
    while text not in log.read_text():
        assert proc.poll() is None, f"{log.name} ended early:\n{log.read_text()}"
        assert time.time() - t0 < timeout, f"no {text!r} in {log.name}"
        time.sleep(0.2)


@pytest.mark.slow  # ~3.5 min; tests/test_oracles.py checks the same in-process on every make test
def test_chief_exits_although_an_idle_worker_vanished(cluster, tmp_path):
    space = tiny_space(tmp_path, epochs=2, steps=4)
    # A lease well above a heartbeat's gap on 2 busy cores: only the idle
    # worker's silence may run out here.
    project, chief, workers = cluster(space, lease="20s", trials=1)
    logs = {n: tmp_path / f"{n}.log" for n in workers}
    t0 = time.time()
    runner = None
    while runner is None and time.time() - t0 < 300:
        runner = next((n for n in workers if "0" in trials_run_by(logs[n])), None)
        time.sleep(0.2)
    assert runner, "no worker took trial 0"
    idle = next(n for n in workers if n != runner)
    # The other one is told IDLE (trial 0 may come back to the queue) and asks
    # again every 2 s; it vanishes while waiting (its first ask follows this
    # line at once; the first epoch's graph tracing alone takes longer).
    wait_for_text(logs[idle], f"worker {idle} of the chief", workers[idle])
    time.sleep(5.0)
    workers[idle].send_signal(signal.SIGKILL)
    workers[idle].wait()
    assert workers[runner].wait(timeout=300) == 0, logs[runner].read_text()
    # The chief drops it after the lease; it checks every 2 s whether it may
    # exit (Keras Tuner's own chief every 20 s).
    assert chief.wait(timeout=90) == 0, (tmp_path / "chief.log").read_text()
    assert f"worker {idle} has not asked for a trial" in (tmp_path / "chief.log").read_text()
    assert trial_statuses(project) == {"0": "COMPLETED"}


@pytest.mark.slow  # ~2.5 min of three processes; the unit test in test_faults.py checks the file names
def test_a_worker_that_hung_after_its_last_report_writes_nothing(flower_root, tmp_path):
    """A worker freezes (SIGSTOP, its heartbeat too) right after reporting
    its trial's last epoch, before it writes the build config and marks the
    trial done. Its lease runs out and the other worker finishes the trial;
    when the first one wakes up it must find it lost the trial and leave
    the new owner's files alone."""
    space = tiny_space(tmp_path, epochs=2, steps=3)
    port = free_port()
    project = tmp_path / "shared-project"
    common = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--lease", "20s"]
    procs = []
    try:
        # Enough trials that the chief is still there when w1 wakes up.
        chief = launch([*common, "--chief", f"127.0.0.1:{port}", "--max-trials", "4"], tmp_path / "chief.log")
        procs.append(chief)
        time.sleep(1.0)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        late_log, other_log = tmp_path / "w1.log", tmp_path / "w2.log"
        late = subprocess.Popen(
            [sys.executable, "bench/faults.py", "--kill-at", "report", "--nth", "2", "--signal", "stop", "--",
             "search", "--plain", *common, "--connect", f"127.0.0.1:{port}", "--worker-id", "w1"],
            cwd=REPO, env=env, stdout=open(late_log, "w"), stderr=subprocess.STDOUT)
        procs.append(late)
        wait_for_text(late_log, "trial 0 (", late)  # w1 has trial 0 before w2 exists
        other = launch([*common, "--connect", f"127.0.0.1:{port}", "--worker-id", "w2"], other_log)
        procs.append(other)
        wait_for_text(late_log, "[faults] SIGSTOP at report (trial 0, epoch 2)", late)
        pointer_file = project / "trial_0" / "resume.json"
        t0 = time.time()
        while not json.loads(pointer_file.read_text()).get("done"):  # w2 took trial 0 over and finished it
            assert other.poll() is None, other_log.read_text()
            assert time.time() - t0 < 240, other_log.read_text()
            time.sleep(0.2)
        pointer = json.loads(pointer_file.read_text())
        assert pointer["worker"] == "w2", pointer
        assert chief.poll() is None, "the chief ended before w1 woke up: the test proves nothing"
        late.send_signal(signal.SIGCONT)
        assert chief.wait(timeout=300) == 0, (tmp_path / "chief.log").read_text()
        assert other.wait(timeout=60) == 0, other_log.read_text()
        late.wait(timeout=60)
        text = late_log.read_text()
        assert re.search(r"trial 0 .*handed over", text), text
        assert json.loads((project / "trial_0" / "resume.json").read_text()) == pointer  # untouched by w1
        assert set(trial_statuses(project).values()) == {"COMPLETED"}
        assert history_epochs(project / "trial_0") == [1, 2]
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait()
