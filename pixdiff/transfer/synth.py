"""L2P's synthetic data engine, in miniature: a hierarchical prompt taxonomy built by code (in place of the paper's
LLM), prompt filtering, and the source model rendering about two images per prompt through its own VAE decoder.
No real image is used from here on.

Taxonomy: category -> subcategory -> leaf prompts, e.g.
    counting    -> circle           -> "three red circles", ...
    composition -> circle + square  -> "one blue circle and two green squares", ...
    relation    -> to the left of   -> "a red circle to the left of a yellow triangle", ...

The set is a folder of PNGs plus `captions.jsonl` (one line per image: file, prompt, taxonomy path, index, cfg, and
how its starting noise was drawn: `noise` = [seed, rows, row] of torch.randn(rows, *noise_shape) on a CPU generator,
so that a coupled-noise student (`pixdiff transfer --coupled-noise`) can train on (the source's noise, its image)
pairs; not recorded for a teacher that itself draws coupled noise).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pixdiff.data.images import load_image, save_image, to_float
from pixdiff.data.shapes import COLOURS, RELATIONS, SHAPES, count_phrase, parse
from pixdiff.errors import InputError

CAPTIONS = "captions.jsonl"
HELDOUT_SEED, MAX_HELDOUT = 1234, 200


def taxonomy() -> dict[str, dict[str, list[str]]]:
    """category -> subcategory -> leaf prompts (every prompt this world can state, before filtering)."""
    counting = {s: [count_phrase(n, c, s) for n in range(1, 5) for c in COLOURS] for s in SHAPES}
    composition = {}
    for s1, s2 in itertools.combinations_with_replacement(SHAPES, 2):
        composition[f"{s1} + {s2}"] = [
            f"{count_phrase(n1, c1, s1)} and {count_phrase(n2, c2, s2)}"
            for n1, n2 in [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (2, 3)] for c1 in COLOURS for c2 in COLOURS
            if (c1, s1) != (c2, s2)]
    relation = {r: [f"a {c1} {s1} {r} a {c2} {s2}" for c1, s1, c2, s2 in
                    itertools.product(COLOURS, SHAPES, COLOURS, SHAPES) if (c1, s1) != (c2, s2)] for r in RELATIONS}
    return {"counting": counting, "composition": composition, "relation": relation}


def keep_prompt(prompt: str, max_objects: int = 4) -> bool:
    """Prompt filtering: the checker must read it, and the scene it asks for must fit the canvas."""
    try:
        req = parse(prompt)
    except ValueError:
        return False
    return 0 < sum(req.counts.values()) <= max_objects


def sample_prompts(n: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[tuple[str, str]]:
    """n (prompt, taxonomy path) pairs: categories in turn, then a random subcategory, then a random leaf; filtered,
    without repeats, and never one of `exclude` (held-out evaluation prompts). A category whose leaves are used up
    drops out of the turn (counting has far fewer leaves than composition and relation)."""
    left = {cat: {sub: [leaf for leaf in leaves if leaf not in exclude and keep_prompt(leaf)]
                  for sub, leaves in subs.items()} for cat, subs in taxonomy().items()}
    total = sum(len(leaves) for subs in left.values() for leaves in subs.values())
    if n > total:
        raise InputError(f"the taxonomy holds {total} prompts after filtering (held-out ones excluded); asked for {n}")
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        cats = [c for c in sorted(left) if any(left[c].values())]
        cat = cats[len(out) % len(cats)]
        subs = sorted(s for s in left[cat] if left[cat][s])
        sub = subs[rng.integers(len(subs))]
        leaf = left[cat][sub].pop(rng.integers(len(left[cat][sub])))
        out.append((leaf, f"{cat}/{sub}"))
    return out


def heldout_prompts(n: int = 60) -> list[str]:
    """The evaluation prompts (`pixdiff eval l2p`): drawn with their own seed; a prefix of the same list for any
    n <= 200, and never part of a synthetic set."""
    if n > MAX_HELDOUT:
        raise InputError(f"at most {MAX_HELDOUT} held-out prompts, asked for {n}")
    return [p for p, _ in sample_prompts(n, seed=HELDOUT_SEED)]


@torch.no_grad()
def synthesize(generator, n_prompts: int, out: str | Path, per_prompt: int = 2, seed: int = 0, batch: int = 16,
               cfg: float | None = None, progress: bool = True) -> dict:
    """Render per_prompt images for each of n_prompts prompts with `generator` (through its own decoder), at guidance
    scale `cfg` (default: the generator's), which every caption row records.
    Resumable: captions are appended batch by batch, each batch seeded by its position, so a run stopped at any
    point and started again with the same arguments skips what is done and ends with the same set."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exclude = set(heldout_prompts(MAX_HELDOUT))
    cfg = generator.cfg.cfg if cfg is None else cfg
    jobs = [(p, path, k) for p, path in sample_prompts(n_prompts, seed, exclude) for k in range(per_prompt)]
    done = [json.loads(line) for line in (out / CAPTIONS).read_text().splitlines()] if (out / CAPTIONS).exists() else []
    if ([(r["prompt"], r["index"], r.get("cfg", cfg)) for r in done] != [(p, k, cfg) for p, _, k in jobs[: len(done)]]
            or len(done) > len(jobs)):
        raise InputError(f"{out} holds another synthetic set ({len(done)} images of other prompts or settings); "
                         "use a new folder or the arguments it was made with")
    start = len(done) if len(done) == len(jobs) else len(done) - len(done) % batch  # a cut batch: again
    with open(out / CAPTIONS, "w") as f:  # rewrite the complete batches, then append
        f.writelines(json.dumps(r) + "\n" for r in done[:start])
    for i in tqdm(range(start, len(jobs), batch), desc="synth", disable=not progress, initial=start // batch,
                  total=-(-len(jobs) // batch)):
        chunk = jobs[i : i + batch]
        noise_seed = seed * 100_003 + i
        noise = generator.noise(len(chunk), torch.Generator().manual_seed(noise_seed))
        images = generator.generate([p for p, _, _ in chunk], cfg=cfg, noise=noise)
        rows = []
        for j, ((prompt, path, k), im) in enumerate(zip(chunk, images)):
            save_image(im, out / f"{i + j:06d}.png")
            rows.append({"file": f"{i + j:06d}.png", "prompt": prompt, "taxonomy": path, "index": k, "cfg": cfg})
            if generator.cfg.noise == "pixel":  # plain torch.randn, remade from this record
                rows[-1].update(noise=[noise_seed, len(chunk), j], noise_shape=list(generator.noise_shape))
        with open(out / CAPTIONS, "a") as f:  # after the images: a listed file always exists
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return {"images": len(jobs), "prompts": n_prompts, "folder": str(out), "source": generator.name, "cfg": cfg,
            "resumed_at": len(done) if done else None}


class SynthSet:
    """A synthetic set on disk: (images (N, 3, H, W) in [-1, 1], prompts), loaded once; with `noise=True` also each
    image's starting noise (N, C, h, w) as the source drew it (remade from the seeds its captions record)."""

    def __init__(self, folder: str | Path, limit: int | None = None, noise: bool = False):
        folder = Path(folder)
        if not (folder / CAPTIONS).exists():
            raise InputError(f"{folder}: no {CAPTIONS} (make a synthetic set with `pixdiff synth`)")
        rows = [json.loads(line) for line in (folder / CAPTIONS).read_text().splitlines() if line.strip()]
        rows = rows[:limit] if limit else rows
        if not rows:
            raise InputError(f"{folder}: the synthetic set is empty")
        self.prompts = [r["prompt"] for r in rows]
        self.images = torch.stack([to_float(load_image(folder / r["file"]).pixels) for r in rows])
        self.noise = self._noise(folder, rows) if noise else None

    @staticmethod
    def _noise(folder: Path, rows: list[dict]) -> torch.Tensor:
        if any("noise" not in r for r in rows):
            raise InputError(f"{folder} does not record its images' starting noise (made before pixdiff recorded "
                             "it); make the set again with `pixdiff synth`")
        batches = {}  # (seed, rows, shape) -> the batch's noise, drawn as synthesize drew it
        out = []
        for r in rows:
            (seed, n, j), shape = r["noise"], tuple(r["noise_shape"])
            if (seed, n, shape) not in batches:
                batches[(seed, n, shape)] = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))
            out.append(batches[(seed, n, shape)][j])
        return torch.stack(out)

    def __len__(self) -> int:
        return len(self.prompts)

    def sample(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, list[str], torch.Tensor | None]:
        """n random (images, prompts, starting noise or None)."""
        idx = torch.randint(len(self), (n,), generator=g)
        noise = None if self.noise is None else self.noise[idx]
        return self.images[idx], [self.prompts[i] for i in idx.tolist()], noise
