"""Choosing the distribution strategy the way the public notebooks do: TPU,
else several GPUs (MirroredStrategy), else one GPU or the CPU default.
Under Keras' JAX backend the same choice is keras.distribution.DataParallel
over the local devices (TPU chips, GPUs, or CPU devices split by XLA_FLAGS),
and no TensorFlow is imported here.

`cpu_replicas` splits the CPU into N logical devices so that MirroredStrategy
(and every multi-replica code path) runs on a plain CPU machine; the tests
use it. It must happen before TensorFlow initialises its devices.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from dataclasses import dataclass
from typing import Any

from tuner.errors import TunerError

KINDS = ("auto", "tpu", "mirrored", "cpu")


@dataclass
class StrategyInfo:
    strategy: Any
    kind: str  # tpu | mirrored | gpu | cpu
    replicas: int
    devices: tuple[str, ...]
    #: JAX: the keras.distribution.DataParallel set for this process (None: one device, or TensorFlow)
    distribution: Any = None

    def global_batch(self, batch_per_replica: int) -> int:
        return batch_per_replica * self.replicas

    @property
    def tf_strategy(self) -> bool:
        """Whether `strategy` is a tf.distribute strategy that Keras Tuner and
        a refit must enter (TensorFlow with several replicas, or a TPU)."""
        return self.strategy is not None and (self.replicas > 1 or self.kind == "tpu")

    def scope(self):
        """The strategy's scope where there is one to enter; else nothing
        (JAX's DataParallel is set process-wide)."""
        return self.strategy.scope() if self.tf_strategy else contextlib.nullcontext()

    def describe(self) -> str:
        devs = ", ".join(self.devices) if self.devices else "default device"
        if self.distribution is not None:
            return f"JAX data parallel on {self.kind}, {self.replicas} replica(s) ({devs})"
        return f"{self.kind} strategy, {self.replicas} replica(s) ({devs})"


def _tpu_hint() -> str | None:
    """Where a TPU could be: 'local' on a TPU VM, a name/address from the
    environment, or None (then no resolver is tried, avoiding its slow
    metadata-server probe on ordinary machines)."""
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    if os.environ.get("COLAB_TPU_ADDR"):
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    if glob.glob("/dev/accel*") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return "local"
    return None


def _connect_tpu(address: str | None):
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise TunerError(
            f"no TPU could be reached ({str(e).splitlines()[0][:160]}); "
            "use --strategy auto or cpu, or run on a TPU machine"
        ) from None


def split_cpu(n: int) -> None:
    """Make the CPU appear as `n` logical devices (before TF initialises)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        raise TunerError(
            f"cannot split the CPU into {n} devices after TensorFlow started; "
            "set TUNER_CPU_REPLICAS before the first use of TensorFlow"
        ) from None


#: steps per TPU call for `steps_per_execution: auto`, as the fast public notebooks use
TPU_STEPS_PER_EXECUTION = 32


def steps_per_execution(asked: str | int, kind: str, steps_per_epoch: int | None = None) -> int:
    """Steps per call into the device: a TPU pays a host round trip per call,
    so "auto" gives it many; elsewhere one (Keras' default). Callbacks still
    run at every epoch end, which is all the tuner's own need.

    Keras 3 runs an epoch as one call per `range(0, steps_per_epoch, N)` and
    each call takes N batches from the repeating dataset, so an N that does
    not divide the epoch's steps trains more of them (10 asked, 32 trained
    with N 32). With `steps_per_epoch`, N is the largest divisor of it not
    above the asked value: every epoch trains exactly its steps."""
    wanted = (TPU_STEPS_PER_EXECUTION if kind == "tpu" else 1) if asked == "auto" else int(asked)
    if not steps_per_epoch or steps_per_epoch % wanted == 0:
        return wanted
    return max(d for d in range(1, min(wanted, steps_per_epoch) + 1) if steps_per_epoch % d == 0)


def steps_per_execution_why(asked: str | int, kind: str, steps_per_epoch: int) -> str:
    """The value `steps_per_execution` gives and why, for the search's log."""
    chosen = steps_per_execution(asked, kind, steps_per_epoch)
    wanted = steps_per_execution(asked, kind)
    source = f"auto: {wanted} on a {kind}" if asked == "auto" else f"asked {wanted}"
    if chosen == wanted:
        return f"{chosen} ({source})"
    return (f"{chosen} ({source}; {chosen} is the largest divisor of the {steps_per_epoch} steps per epoch "
            f"not above it, so that every epoch trains exactly {steps_per_epoch} steps)")


def detect(kind: str = "auto", cpu_replicas: int | None = None) -> StrategyInfo:
    """Build the strategy for `kind` (auto|tpu|mirrored|cpu)."""
    if kind not in KINDS:
        raise TunerError(f"unknown strategy {kind!r}; choose one of {', '.join(KINDS)}")
    if cpu_replicas is None and os.environ.get("TUNER_CPU_REPLICAS"):
        cpu_replicas = int(os.environ["TUNER_CPU_REPLICAS"])
    import keras

    if keras.backend.backend() == "jax":
        return detect_jax(kind, cpu_replicas)
    import tensorflow as tf

    if cpu_replicas and cpu_replicas > 1:
        split_cpu(cpu_replicas)

    if kind == "tpu" or (kind == "auto" and _tpu_hint()):
        strategy = _connect_tpu(_tpu_hint())
        return StrategyInfo(strategy, "tpu", strategy.num_replicas_in_sync, ())

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        devices = gpus or cpus
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return StrategyInfo(strategy, "mirrored", strategy.num_replicas_in_sync, tuple(devices))
    if kind == "auto" and len(gpus) == 1:
        return StrategyInfo(tf.distribute.get_strategy(), "gpu", 1, tuple(gpus))
    return StrategyInfo(tf.distribute.get_strategy(), "cpu", 1, tuple(cpus[:1]))


def split_cpu_jax(n: int) -> None:
    """Make XLA's host platform `n` devices (before JAX starts its CPU
    client: XLA reads XLA_FLAGS once)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def detect_jax(kind: str, cpu_replicas: int | None) -> StrategyInfo:
    """JAX's devices for `kind`: a TPU's chips or several GPUs (auto,
    mirrored) train with keras.distribution.DataParallel over all of them,
    global batch = batch per replica x devices; `cpu` and one device train
    plainly. `cpu_replicas` splits the CPU into that many XLA devices."""
    if cpu_replicas and cpu_replicas > 1:
        split_cpu_jax(cpu_replicas)
    import jax
    import keras

    if kind == "cpu":
        cpu = jax.local_devices(backend="cpu")[:1]
        return StrategyInfo(None, "cpu", 1, tuple(str(d) for d in cpu))
    devices = jax.local_devices()
    platform = devices[0].platform
    if kind == "tpu" and platform != "tpu":
        raise TunerError(f"JAX sees no TPU here (its devices are {platform}); use --strategy auto or cpu, "
                         "or run on a TPU machine")
    names = tuple(str(d) for d in devices)
    one = {"tpu": "tpu", "gpu": "gpu"}.get(platform, "cpu")
    if len(devices) == 1 or (kind == "auto" and platform == "cpu"):  # as TensorFlow's auto: one CPU device
        return StrategyInfo(None, one, 1, names[:1])
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return StrategyInfo(None, "tpu" if platform == "tpu" else "mirrored", len(devices), names, distribution)
