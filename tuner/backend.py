"""Choosing Keras' backend (TensorFlow or JAX) before Keras is imported.

Keras fixes its backend at its first import, from KERAS_BACKEND: every
command that builds or loads a model calls `select` first, and nothing that
`import tuner` or `--help` loads imports Keras. `auto`: KERAS_BACKEND when
it is set; JAX where JAX sees a TPU (Kaggle's TPU VMs have no TensorFlow TPU
build); TensorFlow where TensorFlow sees a GPU; on a CPU the one that
measured faster here (bench/backends.py, BENCHMARKS.md); the one installed
when only one is.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from tuner.errors import TunerError

BACKENDS = ("auto", "tensorflow", "jax")

#: the backend that trained ResNet50V2 faster on a 2-core CPU (bench/backends.py;
#: BENCHMARKS.md, "Keras backends on this CPU")
CPU_FASTER = "tensorflow"


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def active() -> str | None:
    """The backend Keras runs on in this process, None before Keras is imported."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return keras.backend.backend()
    except AttributeError:  # keras half imported
        return os.environ.get("KERAS_BACKEND")


def is_jax() -> bool:
    """True when this process runs Keras on JAX (imports Keras if needed)."""
    import keras

    return keras.backend.backend() == "jax"


def _jax_has_tpu() -> bool:
    from tuner.model.strategy import _tpu_hint

    if _tpu_hint() is None:  # no TPU device here: do not import JAX to ask
        return False
    try:
        import jax

        return any(d.platform == "tpu" for d in jax.devices())
    except Exception:  # no libtpu, or the TPU is held by another process
        return False


def _tensorflow_has_gpu() -> bool:
    if not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl")):
        return False
    from tuner.quiet import import_tensorflow

    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def resolve(asked: str | None = None) -> tuple[str, str]:
    """(backend, why) for `asked` (auto, tensorflow, jax or None: auto)."""
    asked = (asked or "auto").lower()
    if asked not in BACKENDS:
        raise TunerError(f"unknown backend {asked!r}; choose one of {', '.join(BACKENDS)}")
    if asked != "auto":
        if not installed(asked):
            extra = "jax" if asked == "jax" else "cpu"
            raise TunerError(f"backend {asked} is not installed; pip install 'flower-tuner[{extra}]' "
                             "(see the README for a TPU or a GPU), or use --backend auto")
        return asked, "asked for"
    env = os.environ.get("KERAS_BACKEND")
    if env:
        if env not in BACKENDS[1:]:
            raise TunerError(f"KERAS_BACKEND={env} is not a backend flower-tuner runs on; set it to "
                             "tensorflow or jax, or unset it")
        return env, "from KERAS_BACKEND"
    have_tf, have_jax = installed("tensorflow"), installed("jax")
    if not (have_tf or have_jax):
        raise TunerError("neither TensorFlow nor JAX is installed; pip install 'flower-tuner[cpu]' or "
                         "'flower-tuner[jax]'")
    if not have_tf:
        return "jax", "auto: TensorFlow is not installed"
    if not have_jax:
        return "tensorflow", "auto: JAX is not installed"
    if _jax_has_tpu():
        return "jax", "auto: JAX sees a TPU"
    if _tensorflow_has_gpu():
        return "tensorflow", "auto: TensorFlow sees a GPU"
    return CPU_FASTER, f"auto: no accelerator; {CPU_FASTER} trains faster on a CPU (BENCHMARKS.md)"


def select(asked: str | None = None) -> tuple[str, str]:
    """Resolve `asked` and fix it for this process (KERAS_BACKEND) before
    Keras is imported; a process whose Keras already runs on another
    backend cannot switch (one line saying so)."""
    name, why = resolve(asked)
    current = active()
    if current is not None and current != name:
        if (asked or "auto") == "auto":
            return current, "Keras was already imported in this process"
        raise TunerError(f"Keras already runs on {current} in this process and cannot switch to {name}; "
                         f"start a new process (or set KERAS_BACKEND={name} before importing keras)")
    os.environ["KERAS_BACKEND"] = name
    return name, why


def describe(name: str, why: str) -> str:
    """The search's `backend:` line, with the version that runs."""
    from importlib import metadata

    version = ""
    for dist in (("jax",) if name == "jax" else ("tensorflow", "tensorflow-cpu", "tensorflow-tpu")):
        try:
            version = " " + metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue
    return f"backend: {name}{version} ({why})"
