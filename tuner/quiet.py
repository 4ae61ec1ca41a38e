"""Importing TensorFlow, and training with it, without its chatter.

TensorFlow's C++ side writes absl/oneDNN/CPU-feature notices to file
descriptor 2 at import, before TF_CPP_MIN_LOG_LEVEL can take effect; they
would bury the one-line errors the CLI promises. The import runs with fd 2
sent to a temporary file, which is replayed only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: F401  (no op yet: devices stay unconfigured)
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


def quiet_fit_warnings() -> None:
    """Keras warns about tf.data inputs it cannot shuffle or count; ours are
    shuffled and repeated by design (a search's trials and a refit)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*shuffle=True.*was passed")
    warnings.filterwarnings("ignore", message=r".*input ran out of data")
