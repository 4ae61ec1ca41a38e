"""A worker's side of the chief's service: Keras Tuner's own client, over a
channel that carries the token (and TLS when given the chief's certificate).

Keras Tuner's `OracleClient` builds an insecure channel in its constructor
and calls its stub with no metadata. `SecureOracleClient` keeps all of its
methods and only replaces what its constructor sets up: the stub, here one
that adds the token to every call and turns the chief's refusal of it into
one line for the user.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import grpc
from keras_tuner.src import protos
from keras_tuner.src.distribute.oracle_client import OracleClient

from tuner.engine import auth
from tuner.engine.errors import Fatal
from tuner.engine.service import ServiceConfig, target
from tuner.errors import TunerError


class TokenStub:
    """Keras Tuner's generated stub, each call with the token's metadata."""

    def __init__(self, stub: Any, token: str, where: str):
        self._stub, self._metadata, self._where = stub, auth.metadata(token), where

    def __getattr__(self, name: str):
        if name.startswith("_"):  # not a call (copy and pickle ask before __init__ ran)
            raise AttributeError(name)
        return functools.partial(self._call, getattr(self._stub, name))

    def _call(self, method, request, **kwargs):
        try:
            return method(request, metadata=self._metadata, **kwargs)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                # Fatal: Keras Tuner's trial loop re-raises it instead of failing the trial.
                raise Fatal(TunerError(
                    f"the chief at {self._where} refused this worker's token: give it the chief's "
                    f"(--token or ${auth.ENV}; the chief prints it when it starts)")) from None
            raise


class SecureOracleClient(OracleClient):
    """Keras Tuner's client on `channel`, sending `token` on every call."""

    def __init__(self, oracle: Any, channel: grpc.Channel, token: str, where: str):
        # Keras Tuner's __init__ would open an insecure channel: set what it sets.
        self._oracle = oracle
        self.stub = TokenStub(protos.get_service_grpc().OracleStub(channel), token, where)
        self.tuner_id = os.environ["KERASTUNER_TUNER_ID"]
        self.multi_worker = False
        self.should_report = True


def channel(config: ServiceConfig) -> tuple[grpc.Channel, str]:
    """A channel to the chief: TLS with the given certificate, else plain."""
    host, port = config.address()
    where = target(host, port)
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if config.tls_ca:
        with open(config.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(where, creds, options=options), where
    return grpc.insecure_channel(where, options=options), where


def secure_client(kt_client: OracleClient, config: ServiceConfig) -> SecureOracleClient:
    """In place of the client Keras Tuner's tuner made for itself (its
    constructor makes one whenever it runs as a worker)."""
    oracle = kt_client._oracle  # noqa: SLF001 (the worker's own oracle, for its objective)
    log = getattr(oracle, "log", None) or print
    token = auth.worker_token(oracle._project_dir, config.token, log)  # noqa: SLF001
    chan, where = channel(config)
    return SecureOracleClient(oracle, chan, token, where)
