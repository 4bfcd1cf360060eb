"""`pixdiff eval l2p`: GenEval-lite of the source generator and its L2P students on the same held-out prompts and
seeds, the retention ratio (student accuracy / source accuracy; the L2P paper keeps 93% on GenEval), a paired
comparison with the source (the same prompts and seeds make small differences measurable), and the Frechet
distance between each student's samples and the source's. A student grown to a larger size (`transfer --grow`) is
scored on its samples area-downsampled to the source's size."""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pixdiff.data.shapes import check, parse, scene_batch
from pixdiff.errors import InputError
from pixdiff.eval.metrics import frechet_distance, psnr
from pixdiff.transfer.synth import heldout_prompts


def job_prompts(prompts: list[str], per_prompt: int) -> list[str]:
    """The prompt of each sample, in the order every function here uses: seed k of every prompt, then seed k + 1."""
    return [p for _ in range(per_prompt) for p in prompts]


SEED_BLOCK = 16  # noise is drawn per block of this many samples, seeded by (seed, the block's first index)


def eval_noise(generator, start: int, n: int, seed: int):
    """The noise of samples [start, start + n) of an eval (start a multiple of 16): a function that draws (n, C, h, w)
    per block of 16, each block from its own random generator seeded by (seed, the block's first index). Its first
    call is the starting noise; later calls (a stochastic sampler's fresh noise) go on from the same generators."""
    blocks = [(torch.Generator().manual_seed(seed * 100003 + start + j), min(SEED_BLOCK, n - j))
              for j in range(0, n, SEED_BLOCK)]
    return lambda: torch.cat([generator.noise(k, g) for g, k in blocks])


@torch.no_grad()
def sample_all(generator, prompts: list[str], per_prompt: int, seed: int, steps=None, cfg=None,
               batch: int = SEED_BLOCK, progress: bool = True) -> torch.Tensor:
    """per_prompt images for every prompt, (len(prompts) * per_prompt, 3, H, W). The noise of each block of 16
    samples is seeded by (seed, its first index), so every generator sees the same noise for the same sample, and a
    batch of any multiple of 16 (a GPU's 128) gives the same samples as 16 (up to float rounding)."""
    if batch % SEED_BLOCK:
        raise InputError(f"--batch must be a multiple of {SEED_BLOCK} (the noise is drawn per {SEED_BLOCK} samples), "
                         f"got {batch}")
    jobs = job_prompts(prompts, per_prompt)
    out = []
    for i in tqdm(range(0, len(jobs), batch), desc=generator.name, disable=not progress, leave=False):
        chunk = jobs[i : i + batch]
        draw = eval_noise(generator, i, len(chunk), seed)
        out.append(generator.generate(chunk, steps=steps, cfg=cfg, noise=draw(), step_noise=draw))
    return torch.cat(out)


def fingerprint(generator) -> str:
    """A hash of everything a generator's samples depend on besides the prompts and seeds: its config, its network's
    weights, its latent decoder's weights (ldm) and the device type (CPU and CUDA kernels round differently)."""
    modules = [generator.velocity]
    if not generator.pixel:
        modules += latent_modules(generator.source)
    return weights_hash([generator.cfg.to_dict(), generator.device.type], modules)


def latent_modules(latent_source) -> list[torch.nn.Module]:
    return [m for m in vars(latent_source).values() if isinstance(m, torch.nn.Module)]


def weights_hash(settings, modules: list[torch.nn.Module]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def cached_samples(generator, prompts: list[str], per_prompt: int, seed: int, steps=None, cfg=None,
                   cache: Path | None = None, progress: bool = True, batch: int = SEED_BLOCK) -> torch.Tensor:
    """sample_all, read from / written to `cache` (a folder) when given: the file is named by the generator's
    fingerprint and the sampling settings, so a changed model or setting samples again."""
    if cache is None:
        return sample_all(generator, prompts, per_prompt, seed, steps, cfg, batch, progress)
    key = json.dumps([fingerprint(generator), prompts, per_prompt, seed, steps, cfg], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    hits = sorted(Path(cache).glob(f"*-{digest}.pt"))  # the name is a label only: a model shown renamed still hits
    if hits:
        return torch.load(hits[0])
    path = Path(cache) / f"{generator.name.replace('/', '_')}-{digest}.pt"
    images = sample_all(generator, prompts, per_prompt, seed, steps, cfg, batch, progress)
    save_atomic(images, path)
    return images


def save_atomic(tensor: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensor, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)  # no half-written file for a killed run to read back


def object_stats(reports: list[dict], prompts: list[str], per_prompt: int) -> dict:
    """What the objects look like, whether or not the prompt passes: objects found per image against objects asked;
    per asked colour, objects too many (extra: fragments) and too few (missing: merged or absent); how many of
    those found are of a colour the caption does not name (stray: wrong colours, colour fringes) and how many of
    these touch another blob (fringes and split objects, which a true scene never has); the median area of the
    objects of an asked colour (a fraction of the image); the share of images whose objects have exactly the asked
    colours and counts (colour_counts: the pass rate if shapes and relations were not checked) and, in those, the
    share of asked objects read as the asked shape (shapes_right). Continuous where the pass rate is a few percent."""
    reqs = [parse(p) for p in job_prompts(prompts, per_prompt)]
    extra, missing, stray, touching, areas, colour_ok, shapes = [], [], [], [], [], [], []
    for r, req in zip(reports, reqs):
        asked, asked_objects = Counter(), Counter()
        for (colour, shape), n in req.counts.items():
            asked[colour] += n
            asked_objects[(colour, shape)] += n
        colours = [f.split(" ")[0] for f in r["found"]]
        found = Counter(colours)
        colour_ok.append(found == asked)
        if found == asked:  # the same objects by colour: how many are also the asked shape (multiset overlap)
            right = asked_objects & Counter(tuple(f.split(" ")) for f in r["found"])
            shapes.append((sum(right.values()), sum(asked.values())))
        extra.append(sum(max(found[c] - n, 0) for c, n in asked.items()))
        missing.append(sum(max(n - found[c], 0) for c, n in asked.items()))
        stray.append(sum(c not in asked for c in colours))
        touching.append(sum(c not in asked and t for c, t in zip(colours, r["touching"])))
        areas += [a for c, a in zip(colours, r["areas"]) if c in asked]

    def mean(v: list) -> float:
        return round(float(np.mean(v)), 3)

    return {"objects": mean([len(r["areas"]) for r in reports]),
            "asked": mean([sum(req.counts.values()) for req in reqs]),
            "extra": mean(extra), "missing": mean(missing), "stray": mean(stray), "stray_touching": mean(touching),
            "median_area": round(float(np.median(areas)), 4) if areas else None,
            "colour_counts": mean(colour_ok),
            "shapes_right": round(sum(a for a, _ in shapes) / sum(n for _, n in shapes), 3) if shapes else None}


def summarize(ok: list[bool], prompts: list[str], per_prompt: int) -> dict:
    """Accuracy with its standard error (binomial), per caption category, and n."""
    by_cat: dict[str, list[bool]] = {}
    for p, o in zip(job_prompts(prompts, per_prompt), ok):
        req = parse(p)
        cat = "relation" if req.relation else "composition" if len(req.counts) > 1 else "counting"
        by_cat.setdefault(cat, []).append(o)
    acc = sum(ok) / len(ok)
    return {"accuracy": round(acc, 4), "se": round(math.sqrt(acc * (1 - acc) / len(ok)), 4),
            "by_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_cat.items())}, "n": len(ok)}


def geneval_lite(images: torch.Tensor, prompts: list[str], per_prompt: int) -> tuple[dict, list[bool]]:
    """summarize and object_stats of the checker's report on each image, and each verdict (job_prompts' order)."""
    reports = [check(im, p) for im, p in zip(images, job_prompts(prompts, per_prompt))]
    ok = [r["ok"] for r in reports]
    return {**summarize(ok, prompts, per_prompt), **object_stats(reports, prompts, per_prompt)}, ok


def paired(student_ok: list[bool], source_ok: list[bool]) -> dict:
    """Student against source on the same prompts and seeds (McNemar): samples only the student passes (gained),
    only the source passes (lost), and z = (gained - lost) / sqrt(gained + lost); |z| < 2 is within noise."""
    gained = sum(a and not b for a, b in zip(student_ok, source_ok))
    lost = sum(b and not a for a, b in zip(student_ok, source_ok))
    return {"gained": gained, "lost": lost,
            "z": round((gained - lost) / math.sqrt(gained + lost), 2) if gained + lost else 0.0}


@torch.no_grad()
def roundtrips(source, n: int, seed: int, size: int, device="cpu", cache: Path | None = None):
    """n random ground-truth renders (scene_batch), their captions, and the same renders encoded and decoded by the
    latent source `source`; the round trips (minutes on a CPU for 800) are kept in `cache`, keyed by its weights."""
    images, captions = scene_batch(n, np.random.default_rng(seed), size)
    digest = weights_hash([source.name, n, seed, size, torch.device(device).type], latent_modules(source))
    path = Path(cache) / f"reference-{source.name.replace('/', '_')}-{digest}.pt" if cache is not None else None
    if path is not None and path.exists():
        return images, captions, torch.load(path)
    rt = torch.cat([source.decode(source.encode(images[i : i + 32].to(device))).cpu() for i in range(0, n, 32)])
    if path is not None:
        save_atomic(rt, path)
    return images, captions, rt


def reference(source, n: int, seed: int, size: int, device="cpu", cache: Path | None = None) -> dict:
    """The checker on n random ground-truth renders and on their round trips through the latent source."""
    images, captions, rt = roundtrips(source, n, seed, size, device, cache)
    return {"renders": geneval_lite(images, captions, 1)[0],
            "roundtrip": {"source": source.name, "psnr": round(float(psnr(rt, images).mean()), 2),
                          **geneval_lite(rt, captions, 1)[0]}}


def evaluate_l2p(source, students: list, n_prompts: int = 60, per_prompt: int = 4, seed: int = 0, steps=None,
                 cfg=None, features=None, progress: bool = True, cache: Path | None = None,
                 batch: int = SEED_BLOCK) -> dict:
    """cache: a folder keeping every model's samples (cached_samples), so evaluating new students against the same
    source samples it once. batch: samples per forward pass (a multiple of 16; the samples do not depend on it)."""
    prompts = heldout_prompts(n_prompts)
    ref = cached_samples(source, prompts, per_prompt, seed, steps, cfg, cache, progress, batch)
    src, ref_ok = geneval_lite(ref, prompts, per_prompt)
    result = {"prompts": n_prompts, "per_prompt": per_prompt, "seed": seed,
              "source": {"name": source.name, **src}, "students": {},
              "reference": reference(source.source, n_prompts * per_prompt, seed, source.cfg.size, source.device,
                                     cache)}
    samples = {source.name: ref}
    ref_feats = features(ref) if features is not None else None
    for st in students:
        name = st.name if st.name not in samples else f"{st.name} #{len(samples) + 1}"  # columns need distinct names
        ims = cached_samples(st, prompts, per_prompt, seed, steps, cfg, cache, progress, batch)
        if ims.shape[-2:] != ref.shape[-2:]:  # a grown student (transfer --grow): scored at the source's size
            ims = F.interpolate(ims, size=ref.shape[-2:], mode="area")
        samples[name] = ims
        stats, ok = geneval_lite(ims, prompts, per_prompt)
        r = {"size": st.cfg.size, **stats, "vs_source": paired(ok, ref_ok)}
        r["retention"] = retention(r["accuracy"], result["source"]["accuracy"])
        if features is not None:
            feats = features(ims)
            r["frechet_to_source"] = round(frechet_distance(feats, ref_feats), 4)
            # the part from the features' means (the rest is their spread): a shift every sample shares, or not
            r["frechet_mean_term"] = round(float((feats.double().mean(0) - ref_feats.double().mean(0)).pow(2).sum()), 4)
        result["students"][name] = r
    result["samples"] = samples
    return result


def retention(student_accuracy: float, source_accuracy: float) -> float | None:
    """Student accuracy / source accuracy; None (undefined) when the source passes nothing."""
    return round(student_accuracy / source_accuracy, 4) if source_accuracy > 0 else None


def markdown_table(result: dict) -> str:
    cats = list(result["source"]["by_category"])

    def row(name: str, r: dict, tail: str) -> str:
        by_cat = " | ".join(str(r["by_category"].get(c, "")) for c in cats)
        objects = (f"{r['objects']} / {r['asked']} | {r.get('extra', '')} / {r.get('missing', '')} | {r['stray']}"
                   f" ({r.get('stray_touching', '')}) | {r['median_area']} | {r.get('colour_counts', '')} | "
                   f"{r.get('shapes_right', '')}" if "objects" in r
                   else " | | | | | ")  # (JSON written before these columns)
        return f"| {name} | {r['accuracy']} ± {r['se']} | {by_cat} | {objects} | {tail} |"

    head = ("| model | GenEval-lite ± s.e. | " + " | ".join(cats) + " | objects found / asked | asked colours: extra"
            " / missing | of a colour not asked (touching another) | median area of the others | asked colours and "
            "counts exactly | of those, shapes right | retention | vs source: gained / lost (z) | Frechet to source (of "
            "it, the means') |")
    lines = [head, "|---" * (len(cats) + 11) + "|"]
    s = result["source"]
    lines.append(row(f"{s['name']} (source)", s, "1.0 | | 0.0"))
    for name, r in result["students"].items():
        vs = "{gained} / {lost} ({z})".format(**r["vs_source"])
        fd = f"{r['frechet_to_source']} ({r.get('frechet_mean_term', '')})" if "frechet_to_source" in r else ""
        lines.append(row(name, r, f"{'n/a' if r['retention'] is None else r['retention']} | {vs} | {fd}"))
    ref = result.get("reference")
    if ref:
        rt = ref["roundtrip"]
        lines.append(row(f"truth renders (random scenes, n={ref['renders']['n']})", ref["renders"], " | | "))
        lines.append(row(f"the same through {rt['source']} ({rt['psnr']} dB)", rt, " | | "))
    return "\n".join(lines)
