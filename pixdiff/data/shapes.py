"""A world with checkable prompts: procedural scenes of coloured shapes, their captions, and a checker.

A scene is 1-4 flat-coloured objects (six hues, five shapes, varied sizes, never touching) on a plain or gradient
background of low saturation. Captions state counts, colours, shapes and relations:

    "two red circles"                                  (count: always the simplest form)
    "one blue square and two yellow triangles"         (composition)
    "a green star to the left of a red circle"         (relation: left of / right of / above / below)

`check(image, caption)` is our GenEval-lite: it parses the caption, segments the image by colour (hue of saturated
pixels), classifies each blob's shape by its best overlap with the five shape templates, sharp or blurred
(decoders soften edges), and verifies the counts (and no other objects) and the relation between the objects' centres.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

SIZE = 128
COLOURS = {"red": 0, "yellow": 60, "green": 120, "cyan": 180, "blue": 240, "magenta": 300}  # hue in degrees
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
NUMBERS = ("zero", "one", "two", "three", "four")
RELATIONS = ("to the left of", "to the right of", "above", "below")
MIN_SIDE, MAX_SIDE, GAP = 18 / 128, 40 / 128, 6 / 128  # object sizes and spacing, as fractions of the image side


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    cx: float
    cy: float
    side: float  # bounding-box side in pixels


@dataclass
class Scene:
    objects: list[Obj]
    background: tuple  # (top RGB, bottom RGB); equal for a plain background
    caption: str = ""
    meta: dict = field(default_factory=dict)


def hue_rgb(hue: float, sat: float = 1.0, val: float = 1.0) -> tuple[int, int, int]:
    c = val * sat
    x = c * (1 - abs((hue / 60) % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(hue // 60) % 6]
    m = val - c
    return tuple(int(round(255 * (v + m))) for v in (r, g, b))


def polygon(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]] | None:
    """Vertices of a shape in its side x side box (None for the circle, drawn as an ellipse)."""
    h = side / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)]
    if shape == "cross":
        a = side / 6
        return [(cx - a, cy - h), (cx + a, cy - h), (cx + a, cy - a), (cx + h, cy - a), (cx + h, cy + a),
                (cx + a, cy + a), (cx + a, cy + h), (cx - a, cy + h), (cx - a, cy + a), (cx - h, cy + a),
                (cx - h, cy - a), (cx - a, cy - a)]
    return None


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, side: float, fill) -> None:
    pts = polygon(shape, cx, cy, side)
    if pts is None:
        h = side / 2
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
    else:
        draw.polygon(pts, fill=fill)


def render(scene: Scene, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8. Objects are drawn at 4x and down-sampled (anti-aliased edges)."""
    big = 4 * size
    top, bottom = np.array(scene.background[0], float), np.array(scene.background[1], float)
    ramp = np.linspace(0, 1, big)[:, None, None]
    bg = (top * (1 - ramp) + bottom * ramp).repeat(big, 1).astype(np.uint8)
    im = Image.fromarray(bg)
    draw = ImageDraw.Draw(im)
    k = big / size
    for o in scene.objects:
        draw_shape(draw, o.shape, o.cx * k, o.cy * k, o.side * k, hue_rgb(COLOURS[o.colour]))
    return np.asarray(im.resize((size, size), Image.Resampling.BOX))


def _background(rng: np.random.Generator) -> tuple:
    def grey():  # low saturation, mid-range value: never mistaken for an object colour
        v = rng.uniform(0.15, 0.85)
        return hue_rgb(rng.uniform(0, 360), rng.uniform(0, 0.15), v)
    a = grey()
    return (a, a) if rng.random() < 0.5 else (a, grey())


def _place(rng: np.random.Generator, n: int, size: int) -> list[tuple[float, float, float]] | None:
    boxes = []
    for _ in range(n):
        for _attempt in range(200):
            side = rng.uniform(MIN_SIDE, MAX_SIDE) * size
            cx, cy = rng.uniform(side / 2 + 2, size - side / 2 - 2, 2)
            if all(max(abs(cx - x), abs(cy - y)) > (side + s) / 2 + GAP * size for x, y, s in boxes):
                boxes.append((cx, cy, side))
                break
        else:
            return None
    return boxes


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def count_phrase(n: int, colour: str, shape: str) -> str:
    return f"{NUMBERS[n]} {colour} {shape if n == 1 else plural(shape)}"


def random_scene(rng: np.random.Generator, size: int = SIZE, kind: str | None = None) -> Scene:
    """kind: "count" (one group, 1-4 alike), "compose" (two groups), "relation" (two different objects)."""
    kind = kind or rng.choice(["count", "count", "compose", "relation"])
    while True:
        if kind == "count":
            groups = [(int(rng.integers(1, 5)), rng.choice(list(COLOURS)), rng.choice(SHAPES))]
        else:
            a = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
            b = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
            if a == b:
                continue
            if kind == "relation":
                groups = [(1, *a), (1, *b)]
            else:
                n1 = int(rng.integers(1, 3))
                groups = [(n1, *a), (int(rng.integers(1, 5 - n1)), *b)]
        boxes = _place(rng, sum(g[0] for g in groups), size)
        if boxes is None:
            continue
        objs, it = [], iter(boxes)
        for n, colour, shape in groups:
            objs += [Obj(str(shape), str(colour), *next(it)) for _ in range(n)]
        if kind == "relation":
            a, b = objs
            dx, dy = b.cx - a.cx, b.cy - a.cy
            if max(abs(dx), abs(dy)) < 12 / 128 * size or 0.6 < abs(dx) / max(abs(dy), 1e-6) < 1.6:
                continue  # keep the relation unambiguous: clearly more horizontal than vertical, or the reverse
            rel = (RELATIONS[0] if dx > 0 else RELATIONS[1]) if abs(dx) > abs(dy) else \
                (RELATIONS[2] if dy > 0 else RELATIONS[3])
            caption = f"a {a.colour} {a.shape} {rel} a {b.colour} {b.shape}"
        else:
            caption = " and ".join(count_phrase(n, c, s) for n, c, s in groups)
        return Scene(objs, _background(rng), caption, {"kind": kind})


def scene_batch(n: int, rng: np.random.Generator, size: int = SIZE) -> tuple[torch.Tensor, list[str]]:
    """n random scenes rendered as (n, 3, size, size) in [-1, 1], and their captions."""
    scenes = [random_scene(rng, size) for _ in range(n)]
    images = torch.from_numpy(np.stack([render(s, size) for s in scenes])).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, [s.caption for s in scenes]


# ---- the checker -------------------------------------------------------------------------------------------------

_COUNT = re.compile(rf"^(?:(?P<n>{'|'.join(NUMBERS)}|a|an) )(?P<c>{'|'.join(COLOURS)}) (?P<s>{'|'.join(SHAPES)})(?:s|es)?$")


@dataclass
class Requirement:
    counts: dict  # (colour, shape) -> n
    relation: tuple | None = None  # ((colour, shape), relation, (colour, shape))


def parse(caption: str) -> Requirement:
    """The caption grammar of this world. Raises ValueError on anything else."""
    text = caption.strip().lower()
    for rel in RELATIONS:
        if f" {rel} " in text:
            left, right = text.split(f" {rel} ")
            a, b = parse(left), parse(right)
            if len(a.counts) != 1 or len(b.counts) != 1 or a.counts.keys() == b.counts.keys():
                raise ValueError(f"relation captions name two different single objects: {caption!r}")
            (ka,), (kb,) = a.counts, b.counts
            return Requirement({ka: a.counts[ka], kb: b.counts[kb]}, (ka, rel, kb))
    counts = {}
    for part in text.split(" and "):
        m = _COUNT.match(part.strip())
        if not m:
            raise ValueError(f"not a caption of the shapes world: {caption!r} (at {part!r})")
        n = 1 if m["n"] in ("a", "an") else NUMBERS.index(m["n"])
        counts[(m["c"], m["s"])] = counts.get((m["c"], m["s"]), 0) + n
    return Requirement(counts)


@dataclass
class Found:
    colour: str
    shape: str
    cx: float
    cy: float
    area: int
    touching: bool = False  # another blob within TOUCH px: a fringe or a piece of one object, never a scene's object


TOUCH = 3  # pixels; under half the world's gap between objects (GAP), so two objects of a true scene never touch


BLURS = (0.0, 1.0, 2.0, 3.0)  # pixels of Gaussian blur: a decoder's soft edges must not change the shape read


@lru_cache(maxsize=16384)
def _template(shape: str, side: int, blur: float) -> tuple[np.ndarray, float, float] | None:
    """The shape of this side drawn anti-aliased, blurred by `blur` pixels and cut at half height (what the checker
    sees of a softened render). Returns the mask and its centroid (y, x); None when nothing is left of it."""
    pad, k = int(np.ceil(3 * blur)) + 2, 4
    n = side + 2 * pad
    im = Image.new("L", (n * k, n * k))
    draw_shape(ImageDraw.Draw(im), shape, n * k / 2, n * k / 2, side * k, 255)
    a = np.asarray(im.resize((n, n), Image.Resampling.BOX), np.float32) / 255
    m = (ndimage.gaussian_filter(a, blur) if blur else a) >= 0.5
    ys, xs = np.nonzero(m)
    return (m, float(ys.mean()), float(xs.mean())) if len(ys) else None


def _iou(mask: np.ndarray, cy: float, cx: float, t: np.ndarray, ty: float, tx: float) -> float:
    """Overlap of mask and template t, placed so that their centroids coincide."""
    dy, dx = round(cy - ty), round(cx - tx)
    y0, x0 = max(0, dy), max(0, dx)
    y1, x1 = min(mask.shape[0], t.shape[0] + dy), min(mask.shape[1], t.shape[1] + dx)
    inter = int((mask[y0:y1, x0:x1] & t[y0 - dy : y1 - dy, x0 - dx : x1 - dx]).sum()) if y1 > y0 and x1 > x0 else 0
    return inter / (int(mask.sum()) + int(t.sum()) - inter)


def classify(mask: np.ndarray) -> str:
    """The shape of one object's mask: the template (any blur in BLURS, sides from the mask's extent to 4 px more,
    as blur trims pointed tips) with the best overlap. Blurred templates keep a softened diamond or cross from
    reading as a circle, which sharp templates alone do (measured on `vae-f8c16` round trips)."""
    ys, xs = np.nonzero(mask)
    cy, cx, extent = ys.mean(), xs.mean(), int(max(np.ptp(ys), np.ptp(xs))) + 1
    sides = range(max(extent - 1, 2), extent + 5)
    score = {s: max((_iou(mask, cy, cx, *t) for b in BLURS for n in sides if (t := _template(s, n, b))), default=0)
             for s in SHAPES}
    return max(score, key=score.get)


def segment(image: np.ndarray, min_area: float = 40 / 128**2) -> list[Found]:
    """Objects in an (H, W, 3) uint8 image: saturated pixels grouped by nearest hue, then connected blobs of at
    least min_area (a fraction of the image). Each blob's shape is read from where its chroma is at least half its
    own peak, which puts a blurred edge where the sharp one was."""
    min_area = min_area * image.shape[0] * image.shape[1]
    x = image.astype(np.float32) / 255
    mx, mn = x.max(-1), x.min(-1)
    chroma = mx - mn
    sat = chroma / np.maximum(mx, 1e-6)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    d = np.maximum(chroma, 1e-6)
    hue = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60
    fg = (sat > 0.45) & (mx > 0.35)
    names, hues = list(COLOURS), np.array(list(COLOURS.values()), np.float32)
    dist = np.abs((hue[..., None] - hues + 180) % 360 - 180)  # (H, W, 6)
    label = dist.argmin(-1)
    found, masks, pad = [], [], 4
    for i, name in enumerate(names):
        mask = ndimage.binary_opening(fg & (label == i), iterations=1)
        blobs, n = ndimage.label(mask)
        for j, sl in enumerate(ndimage.find_objects(blobs), start=1):
            blob = blobs[sl] == j
            if blob.sum() < min_area:
                continue
            masks.append(blobs == j)
            # the blob's window, widened by pad: its half-peak mask, kept near the blob (neighbours are >= 6 px away)
            wy = slice(max(sl[0].start - pad, 0), sl[0].stop + pad)
            wx = slice(max(sl[1].start - pad, 0), sl[1].stop + pad)
            near = np.zeros(chroma[wy, wx].shape, bool)
            near[sl[0].start - wy.start : sl[0].stop - wy.start, sl[1].start - wx.start : sl[1].stop - wx.start] = blob
            near = ndimage.binary_dilation(near, iterations=2)
            half = near & (label[wy, wx] == i) & (chroma[wy, wx] >= 0.5 * np.percentile(chroma[sl][blob], 90))
            ys, xs = np.nonzero(blob)
            found.append(Found(name, classify(half if half.any() else blob), sl[1].start + xs.mean(),
                               sl[0].start + ys.mean(), int(blob.sum())))
    for k, m in enumerate(masks):
        near = ndimage.binary_dilation(m, iterations=TOUCH)
        found[k].touching = any((near & other).any() for o, other in enumerate(masks) if o != k)
    return found


def check(image: np.ndarray | torch.Tensor, caption: str) -> dict:
    """Does the image show what the caption says? Returns {"ok", "counts", "relation", "found", "areas", "touching"}.
    image: (H, W, 3) uint8, or (3, H, W) float in [-1, 1]."""
    if isinstance(image, torch.Tensor):
        image = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    req = parse(caption)
    objs = segment(image)
    have: dict = {}
    for o in objs:
        have[(o.colour, o.shape)] = have.get((o.colour, o.shape), 0) + 1
    counts_ok = all(have.get(k, 0) == n for k, n in req.counts.items()) and len(objs) == sum(req.counts.values())
    rel_ok = None
    if req.relation is not None and counts_ok:
        ka, rel, kb = req.relation
        a = next(o for o in objs if (o.colour, o.shape) == ka)
        b = next(o for o in objs if (o.colour, o.shape) == kb)
        rel_ok = bool({"to the left of": a.cx < b.cx, "to the right of": a.cx > b.cx,
                       "above": a.cy < b.cy, "below": a.cy > b.cy}[rel])
    ok = counts_ok and (req.relation is None or rel_ok)
    return {"ok": bool(ok), "counts": counts_ok, "relation": rel_ok,
            "found": [f"{o.colour} {o.shape}" for o in objs],
            "areas": [o.area / (image.shape[0] * image.shape[1]) for o in objs],  # fractions of the image
            "touching": [o.touching for o in objs]}
