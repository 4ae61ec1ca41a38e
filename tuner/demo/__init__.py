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

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from tuner.errors import TunerError
from tuner.data.classes import CLASS_NAMES, NUM_CLASSES, TRAIN_CLASS_COUNTS

#: Sizes of the real splits; the demo scales them by `scale`.
REAL_VAL = 3712
REAL_TEST = 7382
MIN_TRAIN_PER_CLASS = 3
MIN_VAL_PER_CLASS = 2
COMPLETE_MARKER = ".complete"
DEMO_FORMAT = 1

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


# --------------------------------------------------------------------------- paths


def default_demo_dir() -> str:
    """`$TUNER_DEMO_DATA`, else `${XDG_CACHE_HOME:-~/.cache}/flower-tuner/demo`."""
    env = os.environ.get("TUNER_DEMO_DATA")
    if env:
        return os.path.expanduser(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flower-tuner", "demo")


def is_complete(out: str) -> bool:
    """True when `out` holds a finished demo tree (its marker is written last)."""
    return os.path.isfile(os.path.join(out, COMPLETE_MARKER))


# ------------------------------------------------------------------------ species

#: Flower colours, HSV in [0, 1].
_PALETTE: dict[str, tuple[float, float, float]] = {
    "white": (0.15, 0.05, 0.97),
    "cream": (0.14, 0.25, 0.97),
    "yellow": (0.145, 0.90, 0.97),
    "gold": (0.11, 0.95, 0.95),
    "orange": (0.07, 0.95, 0.95),
    "red": (0.995, 0.92, 0.85),
    "crimson": (0.96, 0.88, 0.60),
    "salmon": (0.025, 0.55, 0.98),
    "pink": (0.94, 0.42, 0.97),
    "magenta": (0.88, 0.80, 0.85),
    "purple": (0.78, 0.72, 0.62),
    "lilac": (0.76, 0.38, 0.92),
    "blue": (0.63, 0.72, 0.88),
    "sky": (0.57, 0.45, 0.95),
    "maroon": (0.98, 0.80, 0.38),
}
_CENTRE_COLOURS: dict[str, tuple[float, float, float]] = {
    "yellow": (0.14, 0.85, 0.95),
    "orange": (0.08, 0.90, 0.90),
    "brown": (0.07, 0.75, 0.32),
    "black": (0.05, 0.40, 0.10),
    "green": (0.25, 0.60, 0.60),
    "white": (0.15, 0.08, 0.95),
    "darkpurple": (0.80, 0.60, 0.28),
    "red": (0.0, 0.85, 0.60),
}
_SHAPES = ("round", "pointed", "heart", "ray", "bell")
_CENTRE_KINDS = ("disk", "dome", "stamens")


@dataclass(frozen=True)
class Layer:
    petals: int
    length: float  # relative to the flower radius (outer layer 1.0)
    width: float  # petal half-width at its widest, same units
    offset: float  # angular offset, fraction of a petal sector
    base: tuple[float, float, float]  # HSV at the petal base
    tip: tuple[float, float, float]  # HSV at the petal tip


@dataclass(frozen=True)
class Species:
    """A class's fixed look, derived from the class id alone (not the seed)."""

    class_id: int
    name: str
    shape: str
    layers: tuple[Layer, ...]
    gamma: float  # base -> tip gradient exponent
    centre: tuple[float, float, float]
    centre_size: float
    centre_kind: str
    stamen: tuple[float, float, float]
    vein: float  # strength of a dark midline stripe
    spots: bool
    fringe: float  # ragged petal tips (carnation-like)
    notch: float  # heart-shaped petal tips
    leaves: int
    leaf_hsv: tuple[float, float, float]
    stem: bool
    ray_jitter: int  # +- petals per instance for ray flowers

    @property
    def petals(self) -> int:
        return self.layers[0].petals


#: A few hand-set looks so that well-known classes resemble their names; the
#: rest are drawn from the class id. Keys override the drawn values.
_OVERRIDES: dict[str, dict] = {
    "sunflower": dict(shape="pointed", petals=21, width=0.12, base="gold", tip="yellow",
                      centre="brown", centre_size=0.45, centre_kind="disk", layers=2),
    "daisy": dict(shape="ray", petals=24, width=0.07, base="white", tip="white",
                  centre="yellow", centre_size=0.24, centre_kind="dome", layers=1),
    "common dandelion": dict(shape="ray", petals=34, width=0.05, base="yellow", tip="yellow",
                             centre="yellow", centre_size=0.12, centre_kind="disk", layers=3),
    "corn poppy": dict(shape="round", petals=4, width=0.55, base="red", tip="red",
                       centre="black", centre_size=0.16, centre_kind="stamens", layers=1),
    "buttercup": dict(shape="round", petals=5, width=0.42, base="yellow", tip="yellow",
                      centre="green", centre_size=0.16, centre_kind="stamens", layers=1),
    "rose": dict(shape="round", petals=5, width=0.5, base="crimson", tip="red",
                 centre="red", centre_size=0.12, centre_kind="dome", layers=3),
    "black-eyed susan": dict(shape="ray", petals=14, width=0.1, base="orange", tip="gold",
                             centre="black", centre_size=0.3, centre_kind="dome", layers=1),
    "barberton daisy": dict(shape="ray", petals=20, width=0.09, base="red", tip="orange",
                            centre="black", centre_size=0.22, centre_kind="disk", layers=2),
    "purple coneflower": dict(shape="ray", petals=14, width=0.1, base="magenta", tip="pink",
                              centre="orange", centre_size=0.3, centre_kind="disk", layers=1),
    "marigold": dict(shape="round", petals=12, width=0.25, base="orange", tip="gold",
                     centre="orange", centre_size=0.1, centre_kind="dome", layers=3),
    "daffodil": dict(shape="pointed", petals=6, width=0.3, base="cream", tip="yellow",
                     centre="orange", centre_size=0.38, centre_kind="dome", layers=1),
    "grape hyacinth": dict(shape="bell", petals=6, base="blue", tip="purple",
                           centre="white", centre_size=0.1, centre_kind="disk", layers=1),
    "canterbury bells": dict(shape="bell", petals=5, base="purple", tip="lilac",
                             centre="white", centre_size=0.12, centre_kind="stamens", layers=1),
    "morning glory": dict(shape="bell", petals=5, base="white", tip="blue",
                          centre="white", centre_size=0.12, centre_kind="dome", layers=1),
    "lotus": dict(shape="pointed", petals=10, width=0.3, base="white", tip="pink",
                  centre="yellow", centre_size=0.18, centre_kind="dome", layers=2),
    "water lily": dict(shape="pointed", petals=14, width=0.22, base="white", tip="white",
                       centre="yellow", centre_size=0.2, centre_kind="stamens", layers=2),
    "osteospermum": dict(shape="ray", petals=16, width=0.1, base="white", tip="lilac",
                         centre="darkpurple", centre_size=0.22, centre_kind="dome", layers=1),
    "japanese anemone": dict(shape="round", petals=6, width=0.45, base="pink", tip="pink",
                             centre="yellow", centre_size=0.2, centre_kind="stamens", layers=1),
    "windflower": dict(shape="round", petals=5, width=0.42, base="white", tip="sky",
                       centre="yellow", centre_size=0.22, centre_kind="stamens", layers=1),
    "wild rose": dict(shape="heart", petals=5, width=0.5, base="white", tip="pink",
                      centre="yellow", centre_size=0.2, centre_kind="stamens", layers=1),
    "carnation": dict(shape="round", petals=8, width=0.4, base="pink", tip="pink",
                      centre="red", centre_size=0.08, centre_kind="dome", layers=3, fringe=1.0),
    "cosmos": dict(shape="heart", petals=8, width=0.35, base="magenta", tip="pink",
                   centre="yellow", centre_size=0.18, centre_kind="disk", layers=1),
    "tiger lily": dict(shape="pointed", petals=6, width=0.26, base="orange", tip="orange",
                       centre="brown", centre_size=0.1, centre_kind="stamens", layers=1,
                       spots=True),
    "frangipani": dict(shape="round", petals=5, width=0.45, base="yellow", tip="white",
                       centre="yellow", centre_size=0.08, centre_kind="disk", layers=1),
    "hibiscus": dict(shape="round", petals=5, width=0.5, base="crimson", tip="red",
                     centre="red", centre_size=0.1,
                     centre_kind="stamens", layers=1),
    "bougainvillea": dict(shape="round", petals=3, width=0.55, base="magenta", tip="magenta",
                          centre="white", centre_size=0.1, centre_kind="dome", layers=1),
    "poinsettia": dict(shape="pointed", petals=6, width=0.28, base="red", tip="red",
                       centre="yellow", centre_size=0.12, centre_kind="stamens", layers=2),
    "globe thistle": dict(shape="ray", petals=40, width=0.05, base="blue", tip="sky",
                          centre="darkpurple", centre_size=0.3,
                          centre_kind="disk", layers=2),
    "sweet william": dict(shape="round", petals=5, width=0.4, base="crimson", tip="pink",
                          centre="white", centre_size=0.12, centre_kind="dome", layers=1,
                          fringe=1.0),
    "iris": dict(shape="pointed", petals=3, width=0.32, base="purple", tip="blue",
                 centre="yellow", centre_size=0.1, centre_kind="disk", layers=2),
    "yellow iris": dict(shape="pointed", petals=3, width=0.32, base="yellow", tip="gold",
                        centre="brown", centre_size=0.1, centre_kind="disk", layers=2),
    "pink primrose": dict(shape="heart", petals=5, width=0.45, base="pink", tip="pink",
                          centre="yellow", centre_size=0.14, centre_kind="dome", layers=1),
    "primula": dict(shape="heart", petals=5, width=0.45, base="yellow", tip="magenta",
                    centre="yellow", centre_size=0.12, centre_kind="dome", layers=1),
    "wallflower": dict(shape="round", petals=4, width=0.5, base="orange", tip="gold",
                       centre="yellow", centre_size=0.1, centre_kind="dome", layers=1),
    "spring crocus": dict(shape="pointed", petals=6, width=0.3, base="lilac", tip="purple",
                          centre="orange", centre_size=0.14, centre_kind="stamens", layers=1),
    "passion flower": dict(shape="ray", petals=30, width=0.035, base="white", tip="purple",
                           centre="green", centre_size=0.2, centre_kind="stamens", layers=2),
    "gazania": dict(shape="pointed", petals=14, width=0.15, base="maroon", tip="orange",
                    centre="orange", centre_size=0.2, centre_kind="disk", layers=1),
    "californian poppy": dict(shape="round", petals=4, width=0.55, base="orange", tip="gold",
                              centre="orange", centre_size=0.1, centre_kind="stamens",
                              layers=1),
}


def _hsv_jitter(rng: np.random.Generator, hsv: tuple[float, float, float], dh: float,
                ds: float, dv: float) -> tuple[float, float, float]:
    h, s, v = hsv
    return (
        float((h + rng.normal(0, dh)) % 1.0),
        float(np.clip(s + rng.normal(0, ds), 0.0, 1.0)),
        float(np.clip(v + rng.normal(0, dv), 0.05, 1.0)),
    )


@lru_cache(maxsize=None)
def species(class_id: int) -> Species:
    """The fixed look of class `class_id` (independent of any seed)."""
    if not 0 <= class_id < NUM_CLASSES:
        raise ValueError(f"class id {class_id} not in 0..{NUM_CLASSES - 1}")
    rng = np.random.default_rng([0xF10E, class_id])
    name = CLASS_NAMES[class_id]
    ov = _OVERRIDES.get(name, {})
    colours = list(_PALETTE)

    shape = str(rng.choice(_SHAPES, p=[0.3, 0.26, 0.12, 0.2, 0.12]))
    shape = ov.get("shape", shape)
    petals = {
        "round": int(rng.choice([4, 5, 5, 6, 6, 8])),
        "pointed": int(rng.choice([3, 5, 6, 6, 8, 10, 12])),
        "heart": int(rng.choice([4, 5, 5, 6, 8])),
        "ray": int(rng.integers(12, 31)),
        "bell": int(rng.choice([4, 5, 5, 6])),
    }[shape]
    petals = ov.get("petals", petals)
    width = {
        "round": rng.uniform(0.32, 0.55),
        "pointed": rng.uniform(0.16, 0.34),
        "heart": rng.uniform(0.3, 0.5),
        "ray": rng.uniform(0.05, 0.11),
        "bell": 1.0,
    }[shape]
    width = float(ov.get("width", width))

    base_name = str(rng.choice(colours))
    if rng.random() < 0.55:
        tip_name = base_name
    else:
        tip_name = str(rng.choice(colours))
    base = _hsv_jitter(rng, _PALETTE[ov.get("base", base_name)], 0.015, 0.06, 0.05)
    tip = _hsv_jitter(rng, _PALETTE[ov.get("tip", tip_name)], 0.015, 0.06, 0.05)
    gamma = float(rng.uniform(0.5, 2.5))

    centre_name = str(rng.choice(list(_CENTRE_COLOURS)))
    centre = _hsv_jitter(rng, _CENTRE_COLOURS[ov.get("centre", centre_name)], 0.01, 0.05, 0.05)
    lo, hi = (0.18, 0.42) if shape == "ray" else (0.08, 0.3)
    centre_size = float(ov.get("centre_size", rng.uniform(lo, hi)))
    centre_kind = str(ov.get("centre_kind", rng.choice(_CENTRE_KINDS)))
    stamen = _hsv_jitter(rng, _CENTRE_COLOURS[str(rng.choice(["yellow", "orange", "white", "black"]))],
                         0.01, 0.05, 0.05)

    n_layers = {
        "round": int(rng.choice([1, 1, 2, 3])),
        "pointed": int(rng.choice([1, 1, 2])),
        "heart": int(rng.choice([1, 1, 2])),
        "ray": int(rng.choice([1, 1, 2])),
        "bell": 1,
    }[shape]
    n_layers = int(ov.get("layers", n_layers))
    inner_shift = float(rng.uniform(-0.25, 0.25))
    layers = []
    for k in range(n_layers):
        f = 0.68**k
        # Inner layers: slightly lighter or darker, the tip colour leaning to the base.
        b = (base[0], base[1], float(np.clip(base[2] * (1 + inner_shift * k), 0.05, 1)))
        t = tip if k == 0 else b
        layers.append(Layer(petals, f, width * (0.85 + 0.15 * f), 0.5 * (k % 2), b, t))

    vein = float(rng.uniform(0.15, 0.45)) if rng.random() < 0.45 else 0.0
    spots = bool(ov.get("spots", rng.random() < 0.1))
    fringe = float(ov.get("fringe", 1.0 if shape in ("round", "heart") and rng.random() < 0.15 else 0.0))
    notch = float(rng.uniform(0.15, 0.3)) if shape == "heart" else 0.0
    leaves = int(rng.integers(0, 4))
    leaf_hsv = (float(rng.uniform(0.2, 0.36)), float(rng.uniform(0.45, 0.8)),
                float(rng.uniform(0.3, 0.6)))
    stem = bool(rng.random() < 0.6)
    ray_jitter = 2 if shape == "ray" else 0
    return Species(
        class_id=class_id, name=name, shape=shape, layers=tuple(layers), gamma=gamma,
        centre=centre, centre_size=centre_size, centre_kind=centre_kind, stamen=stamen,
        vein=vein, spots=spots, fringe=fringe, notch=notch, leaves=leaves, leaf_hsv=leaf_hsv,
        stem=stem, ray_jitter=ray_jitter,
    )


# ----------------------------------------------------------------------- instances


def _rgb(hsv: Sequence[float]) -> np.ndarray:
    """One HSV colour to an RGB float32 array."""
    import colorsys

    return np.asarray(colorsys.hsv_to_rgb(*hsv), dtype=np.float32)


def _hsv_to_rgb_array(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int32) % 6
    f = h6 - np.floor(h6)
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1).astype(np.float32)


@dataclass
class _Flower:
    cx: float
    cy: float
    scale: float
    rot: float
    axis: float
    squash: float
    petals: int
    width_mul: float
    centre_mul: float
    petal_jitter: np.ndarray  # (layers, 64) relative petal-length jitter
    colour: tuple[float, float, float]  # hue shift, saturation and value factors


@dataclass
class _Instance:
    bg_kind: int
    bg_coarse: np.ndarray  # (k, k, 3) HSV
    bg_fine: np.ndarray  # (m, m, 3) additive
    bokeh: np.ndarray  # (n, 6): x, y, radius, alpha, brightness, unused
    stem_angle: float
    stem_width: float
    leaves: np.ndarray  # (n, 5): angle, length, width fraction, hue shift, value factor
    flowers: list[_Flower]
    light: tuple[float, float]  # angle, strength
    tint: np.ndarray  # (3,) channel gains
    blur: float  # gaussian sigma in image units (0: sharp)
    noise: float
    noise_seed: int


def _draw_flower_params(sp: Species, rng: np.random.Generator, main: bool) -> _Flower:
    if main:
        scale = rng.uniform(0.55, 0.95)
        cx, cy = rng.uniform(-0.2, 0.2, size=2)
    else:
        scale = rng.uniform(0.25, 0.5)
        ang = rng.uniform(0, 2 * math.pi)
        cx, cy = 0.75 * math.cos(ang), 0.75 * math.sin(ang)
    petals = sp.petals + (int(rng.integers(-sp.ray_jitter, sp.ray_jitter + 1)) if sp.ray_jitter else 0)
    return _Flower(
        cx=float(cx), cy=float(cy), scale=float(scale),
        rot=float(rng.uniform(0, 2 * math.pi)),
        axis=float(rng.uniform(0, math.pi)),
        squash=float(rng.uniform(0.65, 1.0)),
        petals=petals,
        width_mul=float(rng.uniform(0.85, 1.15)),
        centre_mul=float(rng.uniform(0.8, 1.2)),
        petal_jitter=rng.normal(0, 0.06, size=(len(sp.layers), 64)).astype(np.float32),
        colour=(float(rng.normal(0, 0.015)), float(rng.uniform(0.85, 1.1)), float(rng.uniform(0.8, 1.1))),
    )


def _draw_instance(sp: Species, rng: np.random.Generator) -> _Instance:
    """All random choices of one image; rendering at any size uses only these."""
    bg_kind = int(rng.integers(0, 4))
    k = 5
    if bg_kind == 0:  # foliage
        h = rng.uniform(0.18, 0.38, (k, k))
        s = rng.uniform(0.35, 0.85, (k, k))
        v = rng.uniform(0.12, 0.55, (k, k))
    elif bg_kind == 1:  # soil, bark, dry leaves
        h = rng.uniform(0.04, 0.12, (k, k))
        s = rng.uniform(0.25, 0.65, (k, k))
        v = rng.uniform(0.15, 0.5, (k, k))
    elif bg_kind == 2:  # sky above, greenery below
        rows = np.linspace(0, 1, k)[:, None] * np.ones((1, k))
        green = rows + rng.normal(0, 0.2, (k, k)) > rng.uniform(0.5, 1.1)
        h = np.where(green, rng.uniform(0.2, 0.35, (k, k)), rng.uniform(0.53, 0.62, (k, k)))
        s = np.where(green, rng.uniform(0.4, 0.8, (k, k)), rng.uniform(0.15, 0.55, (k, k)))
        v = np.where(green, rng.uniform(0.2, 0.5, (k, k)), rng.uniform(0.75, 0.98, (k, k)))
    else:  # mixed green and brown
        green = rng.random((k, k)) < 0.6
        h = np.where(green, rng.uniform(0.18, 0.38, (k, k)), rng.uniform(0.04, 0.12, (k, k)))
        s = rng.uniform(0.3, 0.8, (k, k))
        v = rng.uniform(0.12, 0.55, (k, k))
    bg_coarse = np.stack([h, s, v], axis=-1).astype(np.float32)
    bg_fine = rng.normal(0, 0.05, (11, 11, 3)).astype(np.float32)
    n_bokeh = int(rng.integers(0, 5))
    bokeh = np.column_stack([
        rng.uniform(-1, 1, n_bokeh), rng.uniform(-1, 1, n_bokeh),
        rng.uniform(0.08, 0.3, n_bokeh), rng.uniform(0.1, 0.35, n_bokeh),
        rng.uniform(0.6, 1.0, n_bokeh), np.zeros(n_bokeh),
    ]).astype(np.float32).reshape(n_bokeh, 6)
    stem_angle = float(math.pi / 2 + rng.normal(0, 0.35))
    stem_width = float(rng.uniform(0.02, 0.04))
    n_leaves = max(0, sp.leaves + int(rng.integers(-1, 2)))
    leaves = np.column_stack([
        rng.uniform(0, 2 * math.pi, n_leaves), rng.uniform(0.5, 1.2, n_leaves),
        rng.uniform(0.16, 0.3, n_leaves), rng.normal(0, 0.02, n_leaves),
        rng.uniform(0.7, 1.2, n_leaves),
    ]).astype(np.float32).reshape(n_leaves, 5)
    flowers = []
    if rng.random() < 0.2:
        flowers.append(_draw_flower_params(sp, rng, main=False))
    flowers.append(_draw_flower_params(sp, rng, main=True))
    light = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 0.35)))
    tint = (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
    blur = float(rng.uniform(0.01, 0.03)) if rng.random() < 0.3 else 0.0
    noise = float(rng.uniform(0.0, 0.035))
    noise_seed = int(rng.integers(0, 2**62))
    return _Instance(bg_kind, bg_coarse, bg_fine, bokeh, stem_angle, stem_width, leaves, flowers,
                     light, tint, blur, noise, noise_seed)


# ------------------------------------------------------------------------ rendering


@lru_cache(maxsize=32)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2 - 1
    return np.meshgrid(c, c, indexing="xy")  # X to the right, Y down


@lru_cache(maxsize=64)
def _smooth_matrix(size: int, k: int) -> np.ndarray:
    """(size, k) weights interpolating a k-point grid smoothly onto `size` pixels."""
    x = ((np.arange(size) + 0.5) / size) * 2 - 1
    g = np.linspace(-1.15, 1.15, k)
    sigma = (g[1] - g[0]) * 0.75
    w = np.exp(-0.5 * ((x[:, None] - g[None, :]) / sigma) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    w = _smooth_matrix(size, grid.shape[0])
    # Plain einsum loops, not BLAS: OpenBLAS threads on tiny products cost far more
    # than the products themselves on a busy machine.
    cols = np.einsum("klc,jl->kjc", grid.astype(np.float32), w)
    return np.einsum("ik,kjc->ijc", w, cols)


def _over(img: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    img += (colour - img) * alpha[..., None]


def _profile(shape: str, t: np.ndarray) -> np.ndarray:
    """Petal half-width (relative to the widest) at t = distance / length."""
    tc = np.clip(t, 0.0, 1.0)
    if shape in ("round", "heart"):
        c = 0.6
        x = np.where(tc < c, (tc - c) / c, (tc - c) / (1 - c))
        w = np.sqrt(np.clip(1 - x * x, 0, 1))
    elif shape == "pointed":
        c = 0.38
        w = np.where(tc < c, np.sqrt(np.clip(1 - ((tc - c) / c) ** 2, 0, 1)),
                     np.cos(0.5 * math.pi * (tc - c) / (1 - c)))
        # Keep a narrow base instead of a pinched one.
        w = np.maximum(w, 0.25 * (tc < 0.5))
    else:  # ray: a strap with a round end
        w = np.sqrt(np.clip(1 - tc**8, 0, 1))
    return np.where((t >= 0) & (t <= 1), w, 0.0)


def _draw_flower(img: np.ndarray, X: np.ndarray, Y: np.ndarray, sp: Species, f: _Flower,
                 size: int, light: tuple[float, float]) -> None:
    s = f.scale
    dx, dy = X - f.cx, Y - f.cy
    ca, sa = math.cos(f.axis), math.sin(f.axis)
    a = (dx * ca + dy * sa) / f.squash
    b = -dx * sa + dy * ca
    u0, v0 = a / s, b / s
    r = np.sqrt(u0 * u0 + v0 * v0)
    th = np.arctan2(v0, u0)
    px = 2.0 / size / s  # one pixel in flower units (across the unsquashed axis)

    hue, sat, val = f.colour

    def col(hsv: tuple[float, float, float]) -> np.ndarray:
        return _rgb(((hsv[0] + hue) % 1, min(1.0, hsv[1] * sat), min(1.0, hsv[2] * val)))

    for k, layer in enumerate(sp.layers):
        n = max(3, f.petals)
        sector = 2 * math.pi / n
        rel = th - f.rot - layer.offset * sector
        idx = np.floor(rel / sector + 0.5)
        phi = rel - idx * sector
        idx = idx.astype(np.int64) % n
        length = layer.length * (1 + f.petal_jitter[k][idx % 64])
        u = r * np.cos(phi)
        v = r * np.sin(phi)
        t = u / length
        base, tip = col(layer.base), col(layer.tip)
        if sp.shape == "bell":
            # Fused petals seen from above: a scalloped cup, dark in its throat.
            half = sector / 2
            edge = length * (0.78 + 0.22 * np.clip(1 - np.abs(phi) / half, 0, 1) ** 1.5)
            alpha = np.clip((edge - r) / px + 0.5, 0, 1)
            tt = np.clip(r / edge, 0, 1)
            shade = 0.45 + 0.55 * tt**0.7
            shade = shade * (1 - 0.25 * np.exp(-((v / (0.05 + 0.06 * tt)) ** 2)) * (tt > 0.15))
            w = edge
        else:
            width = layer.width * f.width_mul
            teff = t
            if sp.notch:
                teff = teff + sp.notch * np.clip(1 - np.abs(v) / (0.45 * width), 0, 1) * np.clip(t, 0, 1) ** 4
            if sp.fringe:
                teff = teff + sp.fringe * 0.1 * (1 + np.sin(v / width * 9.0)) * np.clip(t - 0.5, 0, 1)
            w = width * _profile(sp.shape, teff)
            alpha = np.clip((w - np.abs(v)) / px, 0, 1)
            tt = np.clip(t, 0, 1)
            rel_v = np.abs(v) / np.maximum(w, 1e-4)
            shade = 1 - 0.3 * rel_v**2
            if sp.vein:
                shade = shade * (1 - sp.vein * np.exp(-((v / (0.12 * width + px)) ** 2)) * (tt < 0.85))
            # Overlap shadow toward the base of each petal.
            shade = shade * (0.8 + 0.2 * np.clip(tt * 3, 0, 1))
        if sp.spots:
            spot = (np.sin(u * 31 + 1.3) * np.sin(v * 29 + 0.7) > 0.75) & (tt < 0.7)
            shade = shade * np.where(spot, 0.35, 1.0)
        colour = base + (tip - base) * (tt ** sp.gamma)[..., None]
        colour = colour * shade[..., None]
        _over(img, colour, alpha.astype(np.float32))

    # Centre.
    cr = sp.centre_size * f.centre_mul
    alpha = np.clip((cr - r) / px + 0.5, 0, 1).astype(np.float32)
    cc = col(sp.centre)
    rr = r / cr
    lx, ly = math.cos(light[0]), math.sin(light[0])
    if sp.centre_kind == "disk":
        tex = 0.82 + 0.18 * np.cos(rr * 18 - th * 8) * np.cos(rr * 18 + th * 13)
        tex = tex * (1 - 0.3 * rr**2)
    elif sp.centre_kind == "dome":
        tex = 1.15 - 0.5 * rr**2 + 0.25 * (u0 * lx + v0 * ly) / cr
    else:  # stamens: a small disk with a ring of dots
        inner = rr < 0.55
        ring = (np.abs(rr - 0.8) < 0.18) & (np.cos(th * 14) > 0.2)
        tex = np.where(inner, 1.0, 0.7)
        stamen = col(sp.stamen)
        cc = np.where(ring[..., None], stamen, cc * np.ones(3, np.float32))
        alpha = alpha * np.where(inner | ring, 1.0, 0.55).astype(np.float32)
    _over(img, cc * np.clip(tex, 0, 1.4)[..., None], alpha)


def _window(cx: float, cy: float, radius: float, size: int) -> tuple[slice, slice] | None:
    """Rows and columns of the pixels within `radius` (image units) of (cx, cy),
    with a margin: drawing outside it would only add zero alpha."""
    def span(c: float) -> slice:
        lo = max(0, int(math.floor((c - radius + 1) / 2 * size)) - 2)
        hi = min(size, int(math.ceil((c + radius + 1) / 2 * size)) + 2)
        return slice(lo, max(lo, hi))

    rows, cols = span(cy), span(cx)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return None
    return rows, cols


def _flower_radius(sp: Species, f: _Flower) -> float:
    """Largest extent of a flower in image units (squashing only shrinks it)."""
    petal = max(layer.length * (1 + float(f.petal_jitter[k].max())) for k, layer in enumerate(sp.layers))
    return f.scale * max(petal, sp.centre_size * f.centre_mul)


def render(class_id: int, inst: _Instance, size: int) -> np.ndarray:
    """One instance of a class as a uint8 (size, size, 3) image."""
    sp = species(class_id)
    ss = 2 if size < 96 else 1  # supersample small images
    R = size * ss
    X, Y = _grid(R)
    c = inst.bg_coarse
    rgb = _hsv_to_rgb_array(c[..., 0], c[..., 1], c[..., 2])
    img = _upsample(rgb, R) + _upsample(inst.bg_fine, R)
    for bx, by, br, ba, bb, _ in inst.bokeh:
        win = _window(float(bx), float(by), 3.5 * float(br), R)
        if win is None:
            continue
        d2 = (X[win] - bx) ** 2 + (Y[win] - by) ** 2
        a = ba * np.exp(-d2 / (2 * br * br))
        _over(img[win], np.float32(bb) * np.ones(3, np.float32), a.astype(np.float32))

    main = inst.flowers[-1]
    px = 2.0 / R
    if sp.stem:
        d = (math.cos(inst.stem_angle), math.sin(inst.stem_angle))
        dx, dy = X - main.cx, Y - main.cy
        along = dx * d[0] + dy * d[1]
        perp = np.abs(-dx * d[1] + dy * d[0])
        w = inst.stem_width * main.scale
        a = np.clip((w - perp) / px + 0.5, 0, 1) * (along > 0)
        stem_col = _rgb(sp.leaf_hsv) * (0.9 - 0.3 * np.clip(perp / w, 0, 1))[..., None]
        _over(img, stem_col, a.astype(np.float32))
    for ang, length, wf, dh, dv in inst.leaves:
        win = _window(main.cx, main.cy, main.scale * float(length), R)
        if win is None:
            continue
        ca, sa = math.cos(ang), math.sin(ang)
        dx, dy = X[win] - main.cx, Y[win] - main.cy
        u = (dx * ca + dy * sa) / (main.scale * length)
        v = (-dx * sa + dy * ca) / (main.scale * length)
        tt = np.clip(u, 0, 1)
        w = wf * np.clip(np.sin(math.pi * tt), 0, 1) ** 0.8 * ((u > 0) & (u < 1))
        lpx = px / (main.scale * length)
        a = np.clip((w - np.abs(v)) / lpx, 0, 1)
        h, s_, v_ = sp.leaf_hsv
        lc = _rgb(((h + dh) % 1, s_, min(1.0, v_ * dv)))
        rel = np.abs(v) / np.maximum(w, 1e-4)
        shade = (1 - 0.3 * rel) * (1 - 0.35 * np.exp(-((v / (0.02 + lpx)) ** 2)))
        _over(img[win], lc * shade[..., None], a.astype(np.float32))

    for f in inst.flowers:
        win = _window(f.cx, f.cy, _flower_radius(sp, f), R)
        if win is not None:
            _draw_flower(img[win], X[win], Y[win], sp, f, R, inst.light)

    ang, strength = inst.light
    img *= (1 + strength * (X * math.cos(ang) + Y * math.sin(ang)) / 2)[..., None]
    img *= inst.tint
    if ss > 1:
        img = img.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    if inst.noise:
        noise_rng = np.random.default_rng([inst.noise_seed, size])
        img += noise_rng.standard_normal(img.shape, dtype=np.float32) * np.float32(inst.noise)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if inst.blur:
        from PIL import Image, ImageFilter

        radius = inst.blur * size / 2
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    return out


def _instance(class_id: int, seed: int, split_index: int, index: int) -> _Instance:
    rng = np.random.default_rng([seed, split_index, index, 0x5EED])
    return _draw_instance(species(class_id), rng)


def sample_image(class_id: int, size: int = 64, seed: int = 0, index: int = 0) -> np.ndarray:
    """One random instance of a class as uint8 (size, size, 3), for previews.
    Independent of any generated split (its draws use their own stream)."""
    return render(class_id, _instance(class_id, seed, 100 + class_id, index), size)


# ------------------------------------------------------------------------- splits


def _balanced(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels as even over the classes as possible, extras to random classes."""
    per, extra = divmod(n, NUM_CLASSES)
    counts = np.full(NUM_CLASSES, per)
    counts[rng.choice(NUM_CLASSES, size=extra, replace=False)] += 1
    return rng.permutation(np.repeat(np.arange(NUM_CLASSES), counts))


def split_labels(scale: float, seed: int) -> dict[str, np.ndarray]:
    """The class of every record of each split, in file order."""
    if not scale > 0:
        raise TunerError(f"demo scale must be > 0, got {scale}")
    rng = np.random.default_rng([seed, 0x1AB])
    train_counts = [max(MIN_TRAIN_PER_CLASS, round(c * scale)) for c in TRAIN_CLASS_COUNTS]
    train = rng.permutation(np.repeat(np.arange(NUM_CLASSES), train_counts))
    val = _balanced(max(MIN_VAL_PER_CLASS * NUM_CLASSES, round(REAL_VAL * scale)), rng)
    test = _balanced(max(1, round(REAL_TEST * scale)), rng)
    return {"train": train, "val": val, "test": test}


def _ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct 9-character lowercase hex ids."""
    seen: set[int] = set()
    out: list[str] = []
    while len(out) < n:
        for x in rng.integers(0, 16**9, size=2 * (n - len(out)) + 8).tolist():
            if x not in seen:
                seen.add(x)
                out.append(f"{x:09x}")
                if len(out) == n:
                    break
    return out


# ------------------------------------------------------------------------ generate


@dataclass
class DemoSummary:
    root: str
    sizes: tuple[int, ...]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _check_target(out: str) -> None:
    if os.path.exists(out) and not (
        os.path.isdir(out) and (is_complete(out) or not os.listdir(out))
    ):
        raise TunerError(
            f"{out} exists and is not a demo data folder; choose another path or remove it"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or cannot tell
        return True
    return True


def _remove_stale(out: str) -> None:
    """Remove `<out>.tmp-PID` / `<out>.old-PID` left by runs that were killed."""
    parent, base = os.path.split(out)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        for tag in (".tmp-", ".old-"):
            pid = name[len(base) + len(tag):] if name.startswith(base + tag) else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def generate(
    out: str,
    sizes: Sequence[int] = (64,),
    scale: float = 0.1,
    seed: int = 0,
    num_files: int = 16,
    log: Callable[[str], None] | None = None,
) -> DemoSummary:
    """Write a procedural flower dataset in Kaggle's layout under `out`.

    `out` must be absent, empty, or an earlier complete demo tree (replaced).
    The tree is built in `<out>.tmp-<pid>` and renamed into place when done.
    """
    from tuner.data.records import encode_jpeg, write_split

    start = time.perf_counter()
    say = log or (lambda _msg: None)
    sizes_t = tuple(sorted({int(s) for s in sizes}))
    if not sizes_t or any(s < 8 for s in sizes_t):
        raise TunerError(f"demo sizes must be integers >= 8, got {list(sizes)}")
    if num_files < 1:
        raise TunerError(f"num_files must be >= 1, got {num_files}")
    out = os.path.abspath(os.path.expanduser(out))
    _check_target(out)
    labels = split_labels(scale, seed)
    id_rng = np.random.default_rng([seed, 0x1D5])
    all_ids = _ids(sum(len(v) for v in labels.values()), id_rng)

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    _remove_stale(out)
    tmp = f"{out}.tmp-{os.getpid()}"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        pos = 0
        ids_by_split: dict[str, list[str]] = {}
        for split_index, split in enumerate(("train", "val", "test")):
            y = labels[split]
            ids = all_ids[pos : pos + len(y)]
            pos += len(y)
            ids_by_split[split] = ids
            t0 = time.perf_counter()
            jpegs_by_size: dict[int, list[bytes]] = {s: [] for s in sizes_t}
            for i, cls in enumerate(y.tolist()):
                inst = _instance(cls, seed, split_index, i)
                for s in sizes_t:
                    # Encoded one by one: only the JPEG bytes are held in memory.
                    jpegs_by_size[s].extend(encode_jpeg([render(cls, inst, s)]))
            for s in sizes_t:
                jpegs = jpegs_by_size[s]
                labeled = split != "test"
                examples = [
                    (jpg, id_, int(c) if labeled else None)
                    for jpg, id_, c in zip(jpegs, ids, y.tolist())
                ]
                write_split(tmp, s, split, examples, num_files=num_files)
            say(f"demo: {split}: {len(y)} images at {', '.join(f'{s}px' for s in sizes_t)} "
                f"in {time.perf_counter() - t0:.1f}s")

        with open(os.path.join(tmp, "sample_submission.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["id", "label"])
            w.writerows([id_, 0] for id_ in ids_by_split["test"])
        with open(os.path.join(tmp, "test_labels.csv"), "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["id", "label"])
            w.writerows([id_, int(c)] for id_, c in zip(ids_by_split["test"], labels["test"].tolist()))
        counts = {k: int(len(v)) for k, v in labels.items()}
        with open(os.path.join(tmp, COMPLETE_MARKER), "w") as fh:
            json.dump({"format": DEMO_FORMAT, "seed": seed, "scale": scale,
                       "sizes": list(sizes_t), "counts": counts}, fh, sort_keys=True)
            fh.write("\n")

        _check_target(out)
        old = None
        if os.path.exists(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    say(f"demo: wrote {out} ({counts['train']} train, {counts['val']} val, "
        f"{counts['test']} test) in {seconds:.1f}s")
    return DemoSummary(root=out, sizes=sizes_t, counts=counts, seconds=seconds)
