"""The shared secret between a chief and its workers.

Keras Tuner's oracle service checks nothing: anyone who reaches the port can
create trials and report scores. Here every call carries a token in its gRPC
metadata (`authorization: Bearer TOKEN`) and the chief compares it in
constant time (`tuner.engine.service`). A chief given no token makes one and
keeps it in the project (`chief.token`, owner-only), so a restarted chief
keeps its workers; a worker given no token reads that file, which it can when
it shares the project storage as the same user.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable

from tuner.errors import TunerError

TOKEN_FILE = "chief.token"
ENV = "TUNER_TOKEN"
METADATA_KEY = "authorization"
_SCHEME = "Bearer "
#: characters a gRPC metadata value may hold that a shell line carries as is
TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
#: a worker's name (--worker-id, Keras Tuner's tuner id): no path separators, bounded
WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: how long a worker without a token waits for the chief to write its file
#: (as long as Keras Tuner's client waits for the chief itself)
WAIT_SECONDS = 3600.0


def new_token() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def check_token(token: str, where: str) -> str:
    """`token` if it is one a header can carry and a guess cannot find."""
    if not TOKEN_RE.fullmatch(token):
        raise TunerError(
            f"{where} must be 16 to 256 letters, digits or ._~+/=- characters (got {len(token)} characters); "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def given_token(flag: str | None) -> str | None:
    """--token, else $TUNER_TOKEN, checked; None when neither is set."""
    if flag is not None:
        return check_token(flag, "--token")
    env = os.environ.get(ENV)
    return check_token(env, f"${ENV}") if env else None


def token_path(project_dir: str) -> str:
    return os.path.join(project_dir, TOKEN_FILE)


def _read(path: str) -> str | None:
    from tuner.engine import storage

    try:
        text = storage.read_text(path).strip()
    except PermissionError:
        raise
    except (OSError, UnicodeDecodeError):
        return None
    return text if TOKEN_RE.fullmatch(text) else None


def _owner_only(path: str) -> bool:
    """A local file nobody else can read (object stores: their ACLs decide)."""
    from tuner.engine import storage

    return storage.is_remote(path) or (os.stat(path).st_mode & 0o077) == 0


def chief_token(project_dir: str, given: str | None) -> tuple[str, bool]:
    """(the token, whether it was made here): `given`, else the one this
    project's chief made before, else a new one written with mode 0600."""
    from tuner.engine import storage
    from tuner.engine.checkpoint import atomic_write

    path = token_path(project_dir)
    if given is not None:
        # A token made by an earlier chief would mislead the workers that read it.
        if not storage.is_remote(path) and os.path.exists(path):
            os.unlink(path)
        return given, False
    try:
        old = _read(path)
    except PermissionError:  # another user's file: replaced below
        old = None
    if old is not None and _owner_only(path):
        return old, True
    token = new_token()
    atomic_write(path, token + "\n")  # mkstemp's file: 0600 from the start
    if not storage.is_remote(path):
        os.chmod(path, 0o600)
    return token, True


def worker_token(project_dir: str, given: str | None, log: Callable[[str], None],
                 wait: float = WAIT_SECONDS) -> str:
    """`given`, else the chief's token file in the shared project, waited
    for while the chief starts."""
    if given is not None:
        return given
    path = token_path(project_dir)
    t0, told = time.monotonic(), False
    while True:
        try:
            token = _read(path)
        except PermissionError:
            raise TunerError(f"cannot read {path} (only the chief's user can): pass its token with --token "
                             f"or ${ENV}") from None
        if token is not None:
            return token
        if time.monotonic() - t0 >= wait:
            raise TunerError(f"no token for the chief: pass the one it printed with --token or ${ENV} "
                             f"(or share its project, where it writes {path})")
        if not told:
            log(f"no --token or ${ENV}: waiting for the chief to write {path}")
            told = True
        time.sleep(min(1.0, wait))


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata a worker sends."""
    return ((METADATA_KEY, _SCHEME + token),)


class TokenCheck:
    """Compares a call's token with the chief's in constant time: both are
    hashed first, so neither their contents nor their lengths show in the
    time a refusal takes."""

    def __init__(self, token: str):
        self._digest = hashlib.sha256(token.encode()).digest()

    def accepts(self, invocation_metadata) -> bool:
        values = [v for k, v in (invocation_metadata or ()) if k == METADATA_KEY]
        if len(values) != 1 or not isinstance(values[0], str):
            return False
        given = values[0][len(_SCHEME):] if values[0].startswith(_SCHEME) else ""
        return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "replace")).digest(), self._digest)
