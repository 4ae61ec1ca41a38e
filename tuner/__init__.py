"""flower-tuner: hyperparameter search for flower classifiers on Kaggle's
Petals to the Metal TFRecords. TensorFlow is imported lazily by the modules
that need it, so importing the package (and `--help`) stays fast."""

__version__ = "0.1.0"
