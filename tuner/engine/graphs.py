"""Freeing what TensorFlow keeps of a finished trial, and holding back what
is cheaper never to free (a stopped run's input pipeline)."""

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


#: input pipelines whose teardown waits for the search's last line
_HELD: list = []


def hold_input_pipeline(frame) -> None:
    """Keep the iterator of the `fit` that `frame` runs in (a callback's
    caller) from being torn down when that fit returns: the search is
    stopping, and tf.data's iterator, destroyed there, waits for its worker
    threads, 10-18 s measured on 2 loaded cores after a --max-time stop
    (py-spy: RootDataset's ~Iterator in ~LogicalThreadWrapper), which the
    budget cannot foresee. Keras' fit names it `epoch_iterator`; where that
    changes, this quietly holds nothing."""
    from keras.src.trainers.epoch_iterator import EpochIterator

    while frame is not None:
        held = frame.f_locals.get("epoch_iterator")
        if isinstance(held, EpochIterator):
            _HELD.append(held)
            return
        frame = frame.f_back


def release_input_pipelines() -> None:
    """The search's results are written and said: free what was held (its
    wait no longer delays them; `python -m tuner search` exits before, with
    os._exit, so there it never comes)."""
    _HELD.clear()
