"""Freeing what TensorFlow keeps of a finished trial."""

from __future__ import annotations


def _tensorflow_backend() -> bool:
    """Only TensorFlow's Keras backend registers gradients (JAX keeps none)."""
    import keras

    return keras.backend.backend() == "tensorflow"


def gradient_registry_keys() -> set[str]:
    if not _tensorflow_backend():
        return set()
    try:
        from tensorflow.python.framework import ops as tf_ops

        return set(tf_ops._gradient_registry._registry)  # noqa: SLF001
    except (ImportError, AttributeError):
        return set()


def forget_trial_graphs(known: set[str]) -> None:
    """Free a finished trial's traced graphs.

    Keras' optimizer all-reduces inside each traced train step, which
    registers a `CustomGradient-N` closure in TensorFlow's global gradient
    registry that is never removed (keras #17458, tensorflow #61791); it holds
    the whole graph with the model's and optimizer's variables: about 450 MB
    per trial of ResNet50V2 here, 9 GB over a 20-trial search. Removing the
    entries the trial added keeps a long search flat (bench/memory.py). A
    private TensorFlow structure: if it moves, this quietly does nothing."""
    import gc

    try:
        if not _tensorflow_backend():
            raise ImportError
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry  # noqa: SLF001
        for key in [k for k in registry if k not in known and k.startswith("CustomGradient-")]:
            del registry[key]
    except (ImportError, AttributeError):
        pass
    gc.collect()


