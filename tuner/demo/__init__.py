"""Procedural demo flowers written in Kaggle's exact layout.

`generate(out)` draws a small synthetic stand-in for the "Petals to the Metal"
data (see shared/petals-dataset.md): 104 classes, each a fixed "species" derived
from its class id (petal count and shape, colours, centre, layers, leaves),
rendered as random instances (pose, size, position, tilt, colour jitter, blurred
background) and written as the real layout::

    <out>/tfrecords-jpeg-<S>x<S>/{train,val,test}/NN-SxS-COUNT.tfrec
    <out>/sample_submission.csv      # id,label (label 0), one row per test id
    <out>/test_labels.csv            # id,label: the true test labels, for scoring
    <out>/.complete                  # JSON summary, written last

The whole tree is written into `<out>.tmp-<pid>` and renamed into place only
when complete, so an interrupted run never leaves a tree that `is_complete`
accepts. Output is deterministic: the same seed and sizes give the same bytes.
Every size shows the same instances (each is rendered from the same drawn
parameters at each size). Rendering is vectorised numpy, no per-pixel loops.
"""

from tuner.demo.draw import render, sample_image
from tuner.demo.looks import Layer, Species, species
from tuner.demo.splits import split_labels
from tuner.demo.writer import COMPLETE_MARKER, DEMO_FORMAT, DemoSummary, default_demo_dir, generate, is_complete

__all__ = [
    "DemoSummary",
    "Species",
    "default_demo_dir",
    "generate",
    "is_complete",
    "render",
    "sample_image",
    "species",
    "split_labels",
]
