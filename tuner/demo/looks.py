"""Each class's fixed look ("species"): petals, colours, centre, leaves, drawn
from the class id alone so that every seed and size shows the same classes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tuner.data.classes import CLASS_NAMES, NUM_CLASSES


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
