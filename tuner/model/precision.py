"""The float precision a trial computes in (`train.precision`, or the
`precision` dimension): Keras' dtype policy, chosen for the device.

`auto` picks what pays on each machine: mixed_bfloat16 on a TPU; mixed_float16
on an NVIDIA GPU of compute capability 7.0 or more (tensor cores; Keras wraps
the optimizer in a LossScaleOptimizer by itself, and its scale is an
optimizer variable, so the epoch checkpoint keeps it); float32 elsewhere,
CPUs included: bfloat16 without AMX is emulated and slower, and with AMX-BF16
(Sapphire Rapids and later, which the issue expected to pay) it measured 2x
slower at 32 px and no faster at 192 px on a 2-vCPU cloud Xeon.
The classifier's softmax and the metrics stay float32 in every policy."""

from __future__ import annotations

from dataclasses import dataclass

from tuner.errors import TunerError
from tuner.spaces import PRECISIONS


@dataclass(frozen=True)
class Device:
    """What the precision choice needs to know about the machine."""

    kind: str  # tpu | gpu | cpu
    compute_capability: tuple[int, int] | None = None  # NVIDIA GPUs
    cpu_flags: frozenset[str] = frozenset()
    name: str = ""

    def describe(self) -> str:
        if self.kind == "gpu":
            cc = ".".join(map(str, self.compute_capability)) if self.compute_capability else "unknown"
            return f"GPU {self.name or ''} (compute capability {cc})".replace("  ", " ")
        if self.kind == "cpu":
            return "CPU with AMX-BF16" if "amx_bf16" in self.cpu_flags else "CPU without AMX-BF16"
        return "TPU"


def this_device(strategy_kind: str) -> Device:
    """The device trials run on, from the strategy's kind and TensorFlow."""
    if strategy_kind == "tpu":
        return Device("tpu")
    import keras

    if keras.backend.backend() == "jax":
        return _jax_device()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        cc = details.get("compute_capability")
        return Device("gpu", tuple(cc) if cc else None, name=str(details.get("device_name", "")))
    return Device("cpu", cpu_flags=_cpu_flags())


def _jax_device() -> Device:
    """The same facts from JAX (no TensorFlow under the JAX backend)."""
    import jax

    d = jax.local_devices()[0]
    if d.platform == "tpu":
        return Device("tpu")
    if d.platform == "gpu":
        cc = getattr(d, "compute_capability", None)
        parsed = tuple(int(x) for x in str(cc).split(".")[:2]) if cc else None
        return Device("gpu", parsed, name=str(getattr(d, "device_kind", "")))
    return Device("cpu", cpu_flags=_cpu_flags())


def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def choose(asked: str | None, device: Device) -> tuple[str, str]:
    """(Keras dtype policy name, why) for `asked` on `device`; a precision
    the device cannot run is a TunerError naming what can."""
    asked = asked or "auto"
    if asked not in PRECISIONS:
        raise TunerError(f"unknown precision {asked!r}; choose one of {', '.join(PRECISIONS)}")
    if asked == "auto":
        if device.kind == "tpu":
            return "mixed_bfloat16", "auto: bfloat16 is the TPU's native format"
        if device.kind == "gpu" and (device.compute_capability or (0, 0)) >= (7, 0):
            return "mixed_float16", f"auto: {device.describe()} has float16 tensor cores"
        if device.kind == "cpu" and "amx_bf16" in device.cpu_flags:
            # Measured on a 2-vCPU Xeon with AMX-BF16 (bench/accelerator.py, BENCHMARKS.md):
            # ResNet50V2 in mixed_bfloat16 trains 2x slower at 32 px and no faster at 192 px.
            return "float32", "auto: this CPU has AMX-BF16, but mixed_bfloat16 measured no faster here"
        return "float32", f"auto: no fast half precision on this {device.describe()}"
    if asked == "mixed_float16" and not (device.kind == "gpu" and (device.compute_capability or (0, 0)) >= (5, 3)):
        raise TunerError(f"precision mixed_float16 needs an NVIDIA GPU with float16 arithmetic (compute capability "
                         f"5.3+; 7.0+ for speed), and this is a {device.describe()}; use mixed_bfloat16, float32 "
                         "or auto")
    return asked, "asked for in the space"
