"""The chief's gRPC server: Keras Tuner's oracle service, locked down.

Keras Tuner's `start_server` listens on an insecure port with one thread and
hands every request to the oracle as it comes. This one serves the same
service (Keras Tuner's own messages and servicer, so its workers' client
works unchanged) with:
- a token on every call, checked by a server interceptor in constant time
  (`tuner.engine.auth`); a call without it is refused as soon as its headers
  arrive (UNAUTHENTICATED), before its message is read;
- TLS when given a certificate and key; without TLS it listens on loopback
  only, unless told `insecure`;
- every request checked before the oracle sees it (`tuner.engine.messages`):
  INVALID_ARGUMENT, nothing changed; messages bounded in size;
- a few threads, and a deadline on reading each request: gRPC's synchronous
  server reads a unary request in a pool thread, so a client that sends its
  headers and then nothing held Keras Tuner's only thread, and every other
  worker's heartbeats waited behind it. Here each method is served as a
  stream of one message, read under a timer that cancels a call whose
  message does not come.
Refusals go to the chief's log, at most one line per kind every few seconds.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from tuner.engine import auth
from tuner.errors import TunerError

SERVICE = "keras_tuner.Oracle"
METHODS = ("GetSpace", "UpdateSpace", "CreateTrial", "UpdateTrial", "EndTrial", "GetBestTrials", "GetTrial")
#: the largest message gRPC reads at all (each method's own, smaller bound
#: is in tuner.engine.messages.MAX_BYTES)
MAX_MESSAGE = 1024 * 1024
LOG_EVERY = 10.0  # seconds between two log lines about refused calls of one kind


@dataclass
class ServiceConfig:
    """How a chief serves and a worker connects (the search's --token,
    --tls-*, --insecure); host and port default to Keras Tuner's variables."""

    token: str | None = None
    tls_cert: str | None = None  # chief
    tls_key: str | None = None  # chief
    tls_ca: str | None = None  # worker: the certificate (or its CA) the chief's must chain to
    insecure: bool = False
    host: str | None = None
    port: int | None = None
    threads: int = 8
    max_rpcs: int = 128  # calls in progress at once; more are refused (RESOURCE_EXHAUSTED) at once
    receive_seconds: float = 10.0  # a request's message must arrive within this of its headers
    exit_poll: float = 2.0  # how often a finished chief looks whether every worker has gone

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert or self.tls_ca)

    def address(self) -> tuple[str, int]:
        host = self.host if self.host is not None else os.environ["KERASTUNER_ORACLE_IP"]
        port = self.port if self.port is not None else int(os.environ["KERASTUNER_ORACLE_PORT"])
        return host, port


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may well be reachable from elsewhere


def _readable(path: str, flag: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TunerError(f"{flag} {path}: cannot read it ({e.strerror or e})") from None


def check_options(role: str, host: str | None, config: ServiceConfig) -> None:
    """The search's security flags, before anything heavy starts: one line
    for each mistake."""
    flags = [f for f, v in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key),
                            ("--tls-ca", config.tls_ca), ("--insecure", config.insecure)) if v]
    if role == "local":
        if flags:
            raise TunerError(f"{flags[0]} is for a search on several machines (with --chief or --connect)")
        return
    if role == "chief":
        if config.tls_ca:
            raise TunerError("--tls-ca is for workers (--connect); the chief takes --tls-cert and --tls-key")
        if bool(config.tls_cert) != bool(config.tls_key):
            raise TunerError("--tls-cert and --tls-key go together: the chief's certificate and its private key")
        for flag, path in (("--tls-cert", config.tls_cert), ("--tls-key", config.tls_key)):
            if path:
                _readable(path, flag)
        if not config.tls and not config.insecure and not is_loopback(host or ""):
            raise TunerError(
                f"--chief {host} is reachable from other machines, and without TLS the token and the results "
                "travel in clear: add --tls-cert FILE --tls-key FILE (the README shows how to make a "
                "self-signed pair), or --insecure on a network you trust")
        return
    if config.tls_cert or config.tls_key:
        raise TunerError("--tls-cert and --tls-key are for the chief; a worker takes --tls-ca (the chief's certificate)")
    if config.tls_ca:
        _readable(config.tls_ca, "--tls-ca")
    elif not config.insecure and not is_loopback(host or ""):
        raise TunerError(
            f"--connect {host} is another machine, and without TLS this worker's token and results travel in "
            "clear: add --tls-ca FILE (the chief's certificate), or --insecure on a network you trust")


class RefusalLog:
    """One log line per kind of refusal every `every` seconds, the number
    left unsaid in the next: a flood of bad calls cannot fill the disk."""

    def __init__(self, log: Callable[[str], None], every: float = LOG_EVERY):
        self.log, self.every = log, every
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._unsaid: dict[str, int] = {}

    def note(self, kind: str, line: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last.get(kind, -float("inf")) < self.every:
                self._unsaid[kind] = self._unsaid.get(kind, 0) + 1
                return
            unsaid = self._unsaid.pop(kind, 0)
            self._last[kind] = now
        self.log(line + (f" ({unsaid} more since the last such line)" if unsaid else ""))


class _TokenInterceptor(grpc.ServerInterceptor):
    """Calls without the chief's token never reach a handler."""

    def __init__(self, token: str, refuse: Callable[..., Any]):
        self._check = auth.TokenCheck(token)
        self._refuse = refuse

    def intercept_service(self, continuation, handler_call_details):
        if self._check.accepts(handler_call_details.invocation_metadata):
            return continuation(handler_call_details)
        # A stream handler: refused without waiting for (or parsing) its message.
        return grpc.stream_unary_rpc_method_handler(functools.partial(self._refuse, handler_call_details.method))


@functools.cache
def _protos() -> Any:
    from keras_tuner.src import protos

    return protos.get_service()


def _synchronized_call(oracle: Any, servicer: Any, method: str, request: Any, context: Any) -> Any:
    """Check, then let Keras Tuner's servicer act, under the oracle's lock."""
    from tuner.engine import messages

    messages.check(oracle, method, request)
    return getattr(servicer, method)(request, context)


class ChiefService:
    """Keras Tuner's oracle service for `oracle`, with the checks above.
    `start` binds and returns the port; `wait` returns when the search is
    over and every worker has gone (Keras Tuner's own rule)."""

    def __init__(self, oracle: Any, config: ServiceConfig, log: Callable[[str], None] | None = None):
        from keras_tuner.src.distribute.oracle_chief import OracleServicer

        from tuner.engine.sync import synchronized

        self.oracle, self.config = oracle, config
        self.log = log or getattr(oracle, "log", None) or print
        self.refusals = RefusalLog(self.log)
        self._servicer = OracleServicer(oracle)
        self._call = synchronized(_synchronized_call)
        self._server: grpc.Server | None = None
        self._stop = threading.Event()
        self.port: int | None = None
        self.token: str | None = None

    # -- the server ------------------------------------------------------
    def start(self) -> int:
        host, port = self.config.address()
        check_options("chief", host, self.config)
        self.token, made = auth.chief_token(self.oracle._project_dir, self.config.token)  # noqa: SLF001
        handlers = {m: grpc.stream_unary_rpc_method_handler(functools.partial(self._serve, m),
                                                            response_serializer=_serialize) for m in METHODS}
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.threads, thread_name_prefix="chief-rpc"),
            interceptors=[_TokenInterceptor(self.token, self._unauthenticated)],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                     ("grpc.so_reuseport", 0),  # a second chief on this port fails, it does not share it
                     # No keepalive pings: a worker frozen for a while (SIGSTOP, a
                     # suspended VM) would find its connection closed and its next
                     # report failed, instead of told that its trial moved on.
                     ("grpc.server_handshake_timeout_ms", 20_000)],
            maximum_concurrent_rpcs=self.config.max_rpcs)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        where = target(host, port)
        try:
            if self.config.tls_cert:
                with open(self.config.tls_key, "rb") as k, open(self.config.tls_cert, "rb") as c:
                    creds = grpc.ssl_server_credentials([(k.read(), c.read())])
                bound = server.add_secure_port(where, creds)
            else:
                bound = server.add_insecure_port(where)
        except RuntimeError:
            bound = 0
        if not bound:
            raise TunerError(f"cannot listen on {where}: is another chief (or program) using that port, "
                             "or is the address not this machine's?")
        server.start()
        self._server, self.port = server, bound
        self._tell_workers(host, bound, made)
        return bound

    def _tell_workers(self, host: str, port: int, made: bool) -> None:
        shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        token = self.token if made else "<the chief's --token>"
        line = f"workers: TUNER_TOKEN={token} python -m tuner search --connect {target(shown, port)} --worker-id NAME"
        if self.config.tls_cert:
            line += f" --tls-ca {self.config.tls_cert}"
        line += " (with this search's --space and --project)"
        if made:
            line += f"; the token is also in {auth.token_path(self.oracle._project_dir)} (owner-only)"  # noqa: SLF001
        self.log(line)

    def wait(self) -> None:
        from keras_tuner.src.distribute.oracle_chief import exit_chief

        while not self._stop.wait(self.config.exit_poll):
            if self._servicer.stop_triggered and exit_chief(self.oracle):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop(grace=2.0).wait()
            self._server = None

    # -- one call ----------------------------------------------------------
    def _unauthenticated(self, method: str, request_iterator, context) -> NoReturn:
        self.refusals.note("token", f"refused a call without the chief's token: {method[:100]} from {context.peer()}")
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "this chief needs its token (--token or TUNER_TOKEN)")

    def _refuse(self, method: str, context, why: str) -> NoReturn:
        self.refusals.note("message", f"refused a malformed {method} from {context.peer()}: {why}")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)

    def _receive(self, method: str, request_iterator, context) -> bytes:
        """The call's one message, read under the deadline: a call whose
        message does not come in time is cancelled, and its thread is free."""
        timer = threading.Timer(self.config.receive_seconds, context.cancel)
        timer.daemon = True
        timer.start()
        try:
            return next(request_iterator)
        except StopIteration:
            self._refuse(method, context, "no request message")
        except grpc.RpcError:  # cancelled: by the timer, by the client, or too large for gRPC
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the request did not arrive in time")
        finally:
            timer.cancel()

    def _serve(self, method: str, request_iterator, context) -> Any:
        from tuner.engine import messages

        raw = self._receive(method, request_iterator, context)
        if len(raw) > messages.MAX_BYTES[method]:
            self._refuse(method, context, f"{len(raw)} bytes, more than a {method} may have "
                                          f"({messages.MAX_BYTES[method]})")
        try:
            request = getattr(_protos(), f"{method}Request").FromString(raw)
            request.DiscardUnknownFields()
            canonical = request.ByteSize() == len(raw)
        except Exception:  # protobuf's DecodeError, or worse
            canonical = False
        if not canonical:  # bytes that parse as something (protobuf is lenient) but were not sent as one
            self._refuse(method, context, f"not a {method}Request message (or one with fields it does not have)")
        try:
            return self._call(self.oracle, self._servicer, method, request, context)
        except messages.Refused as e:
            self._refuse(method, context, str(e))


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


def serve(oracle: Any, config: ServiceConfig, log: Callable[[str], None] | None = None) -> None:
    """The chief's part of a search: serve until it is over."""
    service = ChiefService(oracle, config, log)
    service.start()
    try:
        service.wait()
    finally:
        service.stop()
