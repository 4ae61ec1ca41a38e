"""The chief's server (tuner.engine.service) on loopback, in-process: a real
oracle of a real space behind it, Keras Tuner's own generated gRPC stubs as
the client. Refused calls (no token, malformed messages) must change nothing
the oracle holds, in memory or on disk; a stalled client must not hold up the
others."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import grpc
import keras_tuner as kt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from keras_tuner.src.protos.v4 import keras_tuner_pb2 as K
from keras_tuner.src.protos.v4 import service_pb2 as S
from keras_tuner.src.protos.v4 import service_pb2_grpc as G

from conftest import tiny_space
from tuner.engine import auth
from tuner.engine.client import SecureOracleClient
from tuner.engine.errors import Fatal
from tuner.engine.leases import LeaseMonitor, lease_key
from tuner.engine.oracles import SECONDS_KEY
from tuner.engine.service import METHODS, ChiefService, ServiceConfig
from tuner.engine.tuner import TUNERS
from tuner.errors import TunerError
from tuner.model.hypermodel import FlowerHyperModel
from tuner.model.strategy import detect
from tuner.spaces import load_space

TOKEN = "t" * 20 + "0123456789abcdefghijklm"  # 43 characters, like a generated one
GOOD = auth.metadata(TOKEN)


def make_oracle(tmp_path: Path, lease: float = 300.0, trials: int = 4):
    """The random search's chief oracle over the tiny test space, declared
    as the chief declares it (tuner.engine.tuner._populate_initial_space)."""
    space = load_space(tiny_space(tmp_path, epochs=3))
    oracle = TUNERS["random"][1](objective=kt.Objective("val_f1", "max"), max_trials=trials, seed=1,
                                 lease_seconds=lease, max_consecutive_failed_trials=10_000, epochs=3)
    hp = kt.HyperParameters()
    FlowerHyperModel(space, None, detect("cpu", None), seed=1).declare_hyperparameters(hp)
    oracle.update_space(hp)
    oracle.verbose = 0  # as the search runs its chief
    oracle._set_project_dir(str(tmp_path), "proj")
    return oracle


class Chief:
    """A started service, its oracle, its log and a stub on loopback."""

    def __init__(self, tmp_path: Path, **config):
        self.oracle = make_oracle(tmp_path, lease=config.pop("lease", 300.0))
        self.project = Path(self.oracle._project_dir)
        self.lines: list[str] = []
        config.setdefault("token", TOKEN)
        self.service = ChiefService(self.oracle, ServiceConfig(host="127.0.0.1", port=0, **config),
                                    self.lines.append)
        self.port = self.service.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = G.OracleStub(self.channel)

    def call(self, method: str, request, metadata=GOOD, timeout: float = 10.0):
        return getattr(self.stub, method)(request, metadata=metadata, timeout=timeout)

    def code(self, method: str, request, metadata=GOOD) -> grpc.StatusCode:
        """The call's status (raw bytes go through a generic call)."""
        try:
            if isinstance(request, bytes):
                self.channel.unary_unary(f"/keras_tuner.Oracle/{method}")(request, metadata=metadata, timeout=10)
            else:
                self.call(method, request, metadata)
        except grpc.RpcError as e:
            return e.code()
        return grpc.StatusCode.OK

    def snapshot(self) -> tuple:
        """Everything a call could change: the project's files, byte for
        byte, and the oracle's state in memory (leases included)."""
        files = {str(p.relative_to(self.project)): p.read_bytes()
                 for p in sorted(self.project.rglob("*")) if p.is_file()}
        o = self.oracle
        memory = json.dumps({"state": o.get_state(), "trials": {t: tr.get_state() for t, tr in o.trials.items()},
                             "owner": o._owner, "last": o._last, "seen": o._seen, "tuner_ids": sorted(o.tuner_ids),
                             "ongoing": sorted(o.ongoing_trials)}, sort_keys=True, default=str)
        return files, memory

    def close(self) -> None:
        self.channel.close()
        self.service.stop()


@pytest.fixture
def chief(tmp_path):
    c = Chief(tmp_path)
    yield c
    c.close()


def running_trial(chief: Chief, worker: str = "w1") -> str:
    """A trial handed to `worker`, with one epoch reported."""
    trial = chief.call("CreateTrial", S.CreateTrialRequest(tuner_id=worker)).trial
    assert trial.status == K.RUNNING
    chief.call("UpdateTrial", S.UpdateTrialRequest(trial_id=trial.trial_id, step=1,
                                                   metrics={"val_f1": 0.5, lease_key(worker): 1.0}))
    return trial.trial_id


def end_request(chief: Chief, tid: str, status=K.COMPLETED) -> S.EndTrialRequest:
    """What a worker sends at a trial's end: the chief's trial, with its status."""
    proto = chief.oracle.trials[tid].to_proto()
    proto.status = status
    return S.EndTrialRequest(trial=proto)


# -- the token ------------------------------------------------------------------
def test_calls_without_the_right_token_are_refused_and_change_nothing(chief):
    tid = running_trial(chief)
    requests = {  # one well-formed request per method
        "GetSpace": S.GetSpaceRequest(),
        "UpdateSpace": S.UpdateSpaceRequest(),
        "CreateTrial": S.CreateTrialRequest(tuner_id="w2"),
        "UpdateTrial": S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": 0.9}, step=2),
        "EndTrial": end_request(chief, tid),
        "GetBestTrials": S.GetBestTrialsRequest(num_trials=1),
        "GetTrial": S.GetTrialRequest(trial_id=tid),
    }
    off_by_one = TOKEN[:-1] + ("a" if TOKEN[-1] != "a" else "b")
    wrong = [(), auth.metadata("x" * 43), auth.metadata(off_by_one), (("authorization", TOKEN),),
             GOOD + GOOD, (("authorization", "Bearer " + TOKEN + " "),)]
    before = chief.snapshot()
    for metadata in wrong:
        for method in METHODS:
            assert chief.code(method, requests[method], metadata) == grpc.StatusCode.UNAUTHENTICATED, (method, metadata)
            # garbage is refused for the token before anyone reads it
            assert chief.code(method, b"\xff" * 50, metadata) == grpc.StatusCode.UNAUTHENTICATED
    assert chief.snapshot() == before
    # 84 refusals, one log line (rate-limited), naming what was refused
    refused = [ln for ln in chief.lines if "without the chief's token" in ln]
    assert len(refused) == 1 and "/keras_tuner.Oracle/" in refused[0] and "127.0.0.1" in refused[0], chief.lines
    # and the right token still works
    assert chief.code("EndTrial", requests["EndTrial"]) == grpc.StatusCode.OK
    assert chief.oracle.trials[tid].status == "COMPLETED"


def test_the_refusal_log_says_how_many_it_left_out():
    lines: list[str] = []
    from tuner.engine.service import RefusalLog

    log = RefusalLog(lines.append, every=0.2)
    for _ in range(50):
        log.note("token", "refused")
    time.sleep(0.25)
    log.note("token", "refused")
    log.note("message", "malformed")
    assert lines == ["refused", "refused (49 more since the last such line)", "malformed"]


def test_a_chief_without_a_token_makes_one_for_its_workers(tmp_path):
    c = Chief(tmp_path, token=None)
    try:
        path = c.project / auth.TOKEN_FILE
        token = path.read_text().strip()
        assert auth.TOKEN_RE.fullmatch(token) and len(token) >= 43
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        line = next(ln for ln in c.lines if ln.startswith("workers:"))
        assert f"TUNER_TOKEN={token} python -m tuner search --connect 127.0.0.1:{c.port}" in line
        assert c.code("GetSpace", S.GetSpaceRequest(), auth.metadata(token)) == grpc.StatusCode.OK
        assert c.code("GetSpace", S.GetSpaceRequest()) == grpc.StatusCode.UNAUTHENTICATED  # TOKEN is not it
        # a worker sharing the project reads it there
        assert auth.worker_token(str(c.project), None, print, wait=0) == token
    finally:
        c.close()
    # a restarted chief keeps it (its workers keep working) ...
    assert auth.chief_token(str(c.project), None) == (token, True)
    # ... unless others could read it; a given token replaces the file
    os.chmod(path, 0o644)
    new, made = auth.chief_token(str(c.project), None)
    assert made and new != token and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.chief_token(str(c.project), TOKEN) == (TOKEN, False) and not path.exists()
    with pytest.raises(TunerError, match="--token or \\$TUNER_TOKEN"):
        auth.worker_token(str(c.project), None, print, wait=0)
    with pytest.raises(TunerError, match="16 to 256"):
        auth.given_token("short")


def test_a_worker_refused_for_its_token_stops_with_one_line(chief, monkeypatch):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "w1")
    client = SecureOracleClient(chief.oracle, chief.channel, "y" * 43, f"127.0.0.1:{chief.port}")
    with pytest.raises(Fatal) as e:
        client.create_trial("w1")
    assert isinstance(e.value.error, TunerError) and "refused this worker's token" in str(e.value.error)
    good = SecureOracleClient(chief.oracle, chief.channel, TOKEN, f"127.0.0.1:{chief.port}")
    assert good.create_trial("w1").status == "RUNNING"


# -- malformed messages ---------------------------------------------------------
def test_malformed_messages_are_refused_and_change_nothing(chief):
    tid = running_trial(chief)

    def end(**change) -> S.EndTrialRequest:
        req = end_request(chief, tid)
        for name, value in change.items():
            req.trial.hyperparameters.values.values[name].CopyFrom(value)
        return req

    unknown_hp = end_request(chief, tid)
    unknown_hp.trial.hyperparameters.space.fixed_space.add(name="made_up", value=K.Value(float_value=0.5))
    nan_history = end_request(chief, tid)
    nan_history.trial.metrics.metrics["val_f1"].observations.add(value=[math.nan], step=2)
    bad = {
        "trial id with ../": ("UpdateTrial", S.UpdateTrialRequest(trial_id="../0", metrics={"val_f1": 0.5})),
        "trial id with a slash": ("GetTrial", S.GetTrialRequest(trial_id=f"{tid}/../../etc")),
        "end a trial id with ../": ("EndTrial", S.EndTrialRequest(trial=K.Trial(trial_id="../../x", status=K.FAILED))),
        "unknown trial": ("GetTrial", S.GetTrialRequest(trial_id="999")),
        "NaN metric": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": math.nan}, step=2)),
        "infinite metric": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": math.inf}, step=2)),
        "beyond float32": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": 1e300}, step=2)),
        "infinite heartbeat": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={lease_key("w1"): -math.inf})),
        "unknown metric": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": 0.5, "made_up": 1.0})),
        "no objective": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_loss": 0.5}, step=2)),
        "lease of a bad name": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={lease_key("../x"): 0.0})),
        "negative epoch time": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={SECONDS_KEY: -1.0})),
        "step past the epochs": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": 0.5}, step=4)),
        "negative step": ("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"val_f1": 0.5}, step=-1)),
        "unknown hyperparameter": ("EndTrial", unknown_hp),
        "unknown value": ("EndTrial", end(made_up=K.Value(float_value=0.5))),
        "value outside the space": ("EndTrial", end(learning_rate=K.Value(float_value=5.0))),
        "value not a choice": ("EndTrial", end(optimizer=K.Value(string_value="sgd"))),
        "value of another kind": ("EndTrial", end(optimizer=K.Value(int_value=1))),
        "NaN in the history": ("EndTrial", nan_history),
        "ends RUNNING": ("EndTrial", end_request(chief, tid, status=K.RUNNING)),
        "new space entry": ("UpdateSpace", S.UpdateSpaceRequest(hyperparameters=unknown_hp.trial.hyperparameters)),
        "bad worker id": ("CreateTrial", S.CreateTrialRequest(tuner_id="../../w")),
        "empty worker id": ("CreateTrial", S.CreateTrialRequest(tuner_id="")),
        "negative count": ("GetBestTrials", S.GetBestTrialsRequest(num_trials=-1)),
        "oversized report": ("UpdateTrial", S.UpdateTrialRequest(trial_id="0" * 20_000)),
        "not a message": ("UpdateTrial", b"\xff\xff\xff\xff"),
        "another message": ("CreateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={"x": 1.0}).SerializeToString()),
    }
    before = chief.snapshot()
    for why, (method, request) in bad.items():
        assert chief.code(method, request) == grpc.StatusCode.INVALID_ARGUMENT, why
        assert chief.snapshot() == before, why
    # Past gRPC's own limit the message is not even read.
    huge = S.UpdateSpaceRequest(hyperparameters=K.HyperParameters(space=K.HyperParameters.Space(
        fixed_space=[K.Fixed(name="x" * 1000, value=K.Value(string_value="y" * 1000)) for _ in range(600)])))
    assert chief.code("UpdateSpace", huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert chief.snapshot() == before
    refused = [ln for ln in chief.lines if "refused a malformed" in ln]
    assert len(refused) == 1, chief.lines  # rate-limited like the token's
    # what a worker really sends still passes
    assert chief.code("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, step=2, metrics={
        "val_f1": 0.7, "loss": 1.5, SECONDS_KEY: 3.0, lease_key("w1"): 2.0})) == grpc.StatusCode.OK
    assert chief.code("EndTrial", end_request(chief, tid)) == grpc.StatusCode.OK
    assert chief.oracle.trials[tid].score == pytest.approx(0.7)


# -- any message at all ---------------------------------------------------------
@pytest.fixture(scope="module")
def shared_chief(tmp_path_factory):
    c = Chief(tmp_path_factory.mktemp("chief"))
    running_trial(c, "w1")
    running_trial(c, "w2")
    yield c
    c.close()


NAMES = ["val_f1", "loss", "val_loss", lease_key("w1"), lease_key("w2"), SECONDS_KEY, "tuner/first_epoch"]
text = st.text(max_size=12)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, 0.5, 1.0, 2.0])


@st.composite
def messages(draw, chief: Chief):
    """(method, request): well-formed ones on the chief's own trials, mutated
    ones, and garbage. What is drawn never depends on the chief's state
    (Hypothesis replays the same draws); only what is built from it does."""
    method = draw(st.sampled_from(METHODS))
    tid = draw(st.sampled_from(["0", "1"]) | st.sampled_from(["0", "1", "2", "3"]) | text)
    if draw(st.integers(0, 2)) == 0:
        return method, draw(st.binary(max_size=64))
    if method == "CreateTrial":
        return method, S.CreateTrialRequest(tuner_id=draw(st.sampled_from(["w1", "w2"]) | text))
    if method == "UpdateTrial":
        metrics = draw(st.fixed_dictionaries({"val_f1": st.floats(0, 1)}, optional={
            "loss": st.floats(0, 10), lease_key("w1"): st.just(1.0), SECONDS_KEY: st.floats(0, 100)})
            | st.dictionaries(st.sampled_from(NAMES) | text, floats, max_size=4))
        return method, S.UpdateTrialRequest(trial_id=tid, metrics=metrics, step=draw(st.integers(-2, 5)))
    if method == "GetTrial":
        return method, S.GetTrialRequest(trial_id=tid)
    if method == "GetBestTrials":
        return method, S.GetBestTrialsRequest(num_trials=draw(st.integers(-3, 20)))
    if method in ("EndTrial", "UpdateSpace"):
        status = draw(st.sampled_from([K.COMPLETED, K.FAILED]) | st.sampled_from(list(K.TrialStatus.values()) + [99]))
        value = None
        if draw(st.booleans()):
            value = (draw(st.sampled_from(["learning_rate", "optimizer", "image_size", "new"]) | text),
                     draw(st.builds(K.Value, float_value=floats) | st.builds(K.Value, string_value=text)
                          | st.builds(K.Value, int_value=st.integers(-2**63, 2**63 - 1)) | st.just(K.Value())))
        history = None
        if draw(st.booleans()):
            history = (draw(st.sampled_from(NAMES) | text), draw(floats), draw(st.integers(-1, 5)))
        trial = chief.oracle.trials[tid].to_proto() if tid in chief.oracle.trials else K.Trial(trial_id=tid)
        trial.status = status
        if value:
            trial.hyperparameters.values.values[value[0]].CopyFrom(value[1])
        if history:
            trial.metrics.metrics[history[0]].observations.add(value=[history[1]], step=history[2])
        if method == "UpdateSpace":
            return method, S.UpdateSpaceRequest(hyperparameters=trial.hyperparameters)
        return method, S.EndTrialRequest(trial=trial)
    return method, S.GetSpaceRequest()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_message_is_answered_and_a_refused_one_changes_nothing(shared_chief, data):
    chief = shared_chief
    method, request = data.draw(messages(chief))
    metadata = data.draw(st.sampled_from([GOOD] * 8 + [(), auth.metadata("z" * 43)]))
    before = chief.snapshot()
    code = chief.code(method, request, metadata)
    event(f"{method}: {code.name}")  # pytest --hypothesis-show-statistics: what the examples reached
    # never an error inside the chief (UNKNOWN, INTERNAL): a check or an answer
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT} if metadata == GOOD \
        else {grpc.StatusCode.UNAUTHENTICATED}
    assert code in allowed, (method, request)
    if code != grpc.StatusCode.OK:
        assert chief.snapshot() == before, (method, request)
    assert chief.code("GetSpace", S.GetSpaceRequest()) == grpc.StatusCode.OK


# -- a stalled client -------------------------------------------------------------
def never_sends(stop: threading.Event):
    """A request stream that never yields: the call's headers go out, its message never does."""
    stop.wait()
    return
    yield  # noqa: unreachable: makes this a generator


def test_a_stalled_client_does_not_hold_up_the_other_workers(tmp_path):
    """Calls that send their headers and then nothing hold 3 of the chief's
    4 threads all along; meanwhile a worker's heartbeats keep its lease
    (4 s) and its trial completes. Keras Tuner's one-thread server waits
    for the first stalled message: the heartbeats queue behind it and the
    lease runs out. (A 2 s lease ran out once in a clean-clone suite on 2
    busy cores, heartbeats 0.3 s apart: load, not the stall.)"""
    chief = Chief(tmp_path, lease=4.0, threads=4, receive_seconds=60.0)
    monitor = LeaseMonitor(chief.oracle, interval=0.2)
    monitor.start()
    stop = threading.Event()
    try:
        stalled = chief.channel.stream_unary("/keras_tuner.Oracle/UpdateTrial")
        calls = [stalled.future(never_sends(stop), metadata=GOOD, timeout=60) for _ in range(3)]
        tid = running_trial(chief, "w1")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 9.0:  # more than twice the lease
            beat = chief.call("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, metrics={lease_key("w1"): 0.0}),
                              timeout=1.5)
            assert beat.trial.status == K.RUNNING, "the lease ran out"
            time.sleep(0.3)
        assert not any(c.done() for c in calls)  # still stalled all along
        chief.call("UpdateTrial", S.UpdateTrialRequest(trial_id=tid, step=2, metrics={"val_f1": 0.8, lease_key("w1"): 2.0}))
        assert chief.code("EndTrial", end_request(chief, tid)) == grpc.StatusCode.OK
        assert chief.oracle.trials[tid].status == "COMPLETED"
        assert not any("lease of trial" in ln for ln in chief.lines), chief.lines
    finally:
        stop.set()
        monitor.stop()
        chief.close()


def test_a_call_whose_message_never_comes_is_cancelled(tmp_path):
    """The receive deadline: even with one thread, a stalled call holds it
    only that long, and the call queued behind it is answered then."""
    chief = Chief(tmp_path, threads=1, receive_seconds=0.5)
    stop = threading.Event()
    try:
        stalled = chief.channel.stream_unary("/keras_tuner.Oracle/GetSpace").future(
            never_sends(stop), metadata=GOOD, timeout=60)
        time.sleep(0.2)
        assert chief.call("GetSpace", S.GetSpaceRequest(), timeout=5).hyperparameters.space.float_space
        assert stalled.exception(timeout=5) is not None and stalled.code() == grpc.StatusCode.CANCELLED
    finally:
        stop.set()
        chief.close()


# -- TLS --------------------------------------------------------------------------
def make_certificate(folder: Path, name: str = "chief") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, as the README
    makes one (openssl; no network)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=chief", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_over_tls_only_a_client_that_trusts_the_certificate_gets_in(tmp_path):
    cert, key = make_certificate(tmp_path)
    chief = Chief(tmp_path, tls_cert=str(cert), tls_key=str(key))
    try:
        assert any(f"--tls-ca {cert}" in ln for ln in chief.lines), chief.lines
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{chief.port}", creds) as secure:
            stub = G.OracleStub(secure)
            assert stub.GetSpace(S.GetSpaceRequest(), metadata=GOOD, timeout=10).hyperparameters.space.float_space
            with pytest.raises(grpc.RpcError) as e:
                stub.GetSpace(S.GetSpaceRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # in clear, the chief does not answer at all
        assert chief.code("GetSpace", S.GetSpaceRequest()) == grpc.StatusCode.UNAVAILABLE
        other, _ = make_certificate(tmp_path, "other")
        with grpc.secure_channel(f"127.0.0.1:{chief.port}",
                                 grpc.ssl_channel_credentials(root_certificates=other.read_bytes())) as wrong:
            with pytest.raises(grpc.RpcError) as e:
                G.OracleStub(wrong).GetSpace(S.GetSpaceRequest(), metadata=GOOD, timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        chief.close()


# -- the search's flags -----------------------------------------------------------
@pytest.mark.parametrize("args, says", [
    (["--chief", "0.0.0.0:8000"], "--chief 0.0.0.0 is reachable from other machines"),
    (["--connect", "10.0.0.5:8000", "--worker-id", "w1"], "add --tls-ca FILE"),
    (["--chief", "127.0.0.1:8000", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
    (["--chief", "127.0.0.1:8000", "--tls-ca", "c.pem"], "--tls-ca is for workers"),
    (["--connect", "127.0.0.1:8000", "--worker-id", "w1", "--tls-cert", "c.pem"], "are for the chief"),
    (["--connect", "127.0.0.1:8000", "--worker-id", "w1", "--tls-ca", "/no/such.pem"], "cannot read it"),
    (["--connect", "127.0.0.1:8000", "--worker-id", "a/b"], "--worker-id 'a/b'"),
    (["--chief", "127.0.0.1:8000", "--token", "short"], "--token must be 16 to 256"),
    (["--token", "x" * 20], "--token is for a search on several machines"),
    (["--insecure"], "--insecure is for a search on several machines"),
])
def test_unsafe_or_wrong_flags_end_in_one_line(tmp_path, capsys, args, says):
    from tuner.cli import main

    code = main(["search", "--space", str(tiny_space(tmp_path)), "--project", str(tmp_path / "p"), *args])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p").exists()  # refused before anything was written


def test_insecure_allows_a_chief_on_every_address(tmp_path):
    from tuner.engine.service import check_options

    check_options("chief", "0.0.0.0", ServiceConfig(insecure=True))
    check_options("worker", "10.0.0.5", ServiceConfig(insecure=True))
    check_options("chief", "::1", ServiceConfig())
    check_options("worker", "localhost", ServiceConfig())


# -- a whole search over TLS --------------------------------------------------------
@pytest.mark.slow  # ~1.5 min of two processes; test_distributed's cluster runs with a token on every make test
def test_a_worker_completes_a_search_over_tls_while_a_client_stalls_and_another_guesses(flower_root, tmp_path,
                                                                                        monkeypatch):
    from test_distributed import free_port, launch

    cert, key = make_certificate(tmp_path)
    space = tiny_space(tmp_path, epochs=2, steps=2)
    port = free_port()
    project = tmp_path / "project"
    common = ["--space", str(space), "--data", str(flower_root), "--project", str(project), "--lease", "20s"]
    monkeypatch.setenv("TUNER_TOKEN", TOKEN)  # inherited by both processes, as a user would export it
    procs = []
    stop = threading.Event()
    try:
        procs.append(launch([*common, "--chief", f"127.0.0.1:{port}", "--max-trials", "2",
                             "--tls-cert", str(cert), "--tls-key", str(key)], tmp_path / "chief.log"))
        procs.append(launch([*common, "--connect", f"127.0.0.1:{port}", "--worker-id", "w1", "--tls-ca", str(cert)],
                            tmp_path / "w1.log"))
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())

        def hostile() -> None:
            """Keeps stalled calls open (with the token) and guesses tokens."""
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as chan:
                stalled = chan.stream_unary("/keras_tuner.Oracle/UpdateTrial")
                guess = G.OracleStub(chan)
                while not stop.is_set():
                    for _ in range(10):
                        stalled.future(never_sends(stop), metadata=GOOD, timeout=120)
                    try:
                        guess.CreateTrial(S.CreateTrialRequest(tuner_id="x"), metadata=auth.metadata("g" * 43),
                                          timeout=5)
                    except grpc.RpcError:
                        pass
                    stop.wait(2.0)

        threading.Thread(target=hostile, daemon=True).start()
        assert procs[0].wait(timeout=600) == 0, (tmp_path / "chief.log").read_text()
        assert procs[1].wait(timeout=60) == 0, (tmp_path / "w1.log").read_text()
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    from test_search import trial_statuses

    assert trial_statuses(project) == {"0": "COMPLETED", "1": "COMPLETED"}
    chief_log = (tmp_path / "chief.log").read_text()
    assert "lease of trial" not in chief_log, chief_log
    assert "refused a call without the chief's token" in chief_log
    assert not (project / auth.TOKEN_FILE).exists()  # a given token is not written anywhere
