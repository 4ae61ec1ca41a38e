"""flower-tuner: hyperparameter search for flower classifiers on Kaggle's
Petals to the Metal TFRecords. TensorFlow is imported lazily by the modules
that need it, so importing the package (and `--help`) stays fast."""

__version__ = "0.1.0"

# The submodule first: importing it later (search() does) would rebind
# `tuner.search` from the function to the module, and a second call fail.
from tuner import search as _submodule  # noqa: E402  (light: no TensorFlow)
from tuner.api import Export, Trials, best, export, search, status  # noqa: E402  (light: no TensorFlow)
from tuner.errors import TunerError  # noqa: E402

del _submodule

__all__ = ["search", "status", "best", "export", "Trials", "Export", "TunerError", "__version__"]
