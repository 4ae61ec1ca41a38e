"""Drawing one image of a class: the random choices of an instance (pose,
background, light), then rendering them at any size with vectorised numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tuner.demo.looks import Species, species


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
