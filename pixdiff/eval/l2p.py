"""`pixdiff eval l2p`: GenEval-lite of the source generator and its L2P students on the same held-out prompts and
seeds, the retention ratio (student accuracy / source accuracy; the L2P paper keeps 93% on GenEval), and the
Frechet distance between each student's samples and the source's. A student grown to a larger size
(`transfer --grow`) is scored on its samples area-downsampled to the source's size."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pixdiff.data.shapes import check, parse, scene_batch
from pixdiff.eval.metrics import frechet_distance, psnr
from pixdiff.transfer.synth import heldout_prompts


@torch.no_grad()
def sample_all(generator, prompts: list[str], per_prompt: int, seed: int, steps=None, cfg=None, batch: int = 16,
               progress: bool = True) -> torch.Tensor:
    """per_prompt images for every prompt, (len(prompts) * per_prompt, 3, H, W); image k of prompt i is seeded by
    (seed, k) so every generator sees the same noise seeds."""
    jobs = [(p, k) for k in range(per_prompt) for p in prompts]
    out = []
    for i in tqdm(range(0, len(jobs), batch), desc=generator.name, disable=not progress, leave=False):
        chunk = jobs[i : i + batch]
        g = torch.Generator().manual_seed(seed * 100003 + i)
        out.append(generator.generate([p for p, _ in chunk], steps=steps, cfg=cfg, generator=g))
    return torch.cat(out)


def geneval_lite(images: torch.Tensor, prompts: list[str], per_prompt: int) -> dict:
    jobs = [p for _ in range(per_prompt) for p in prompts]
    ok = [check(im, p)["ok"] for im, p in zip(images, jobs)]
    by_cat: dict[str, list[bool]] = {}
    for p, o in zip(jobs, ok):
        req = parse(p)
        cat = "relation" if req.relation else "composition" if len(req.counts) > 1 else "counting"
        by_cat.setdefault(cat, []).append(o)
    return {"accuracy": round(sum(ok) / len(ok), 4),
            "by_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_cat.items())}, "n": len(ok)}


@torch.no_grad()
def reference(source, n: int, seed: int, size: int) -> dict:
    """The checker on n random ground-truth renders and on the same renders encoded and decoded by `source`."""
    images, captions = scene_batch(n, np.random.default_rng(seed), size)
    rt = torch.cat([source.decode(source.encode(images[i : i + 32])) for i in range(0, n, 32)])
    return {"renders": geneval_lite(images, captions, 1),
            "roundtrip": {"source": source.name, "psnr": round(float(psnr(rt, images).mean()), 2),
                          **geneval_lite(rt, captions, 1)}}


def evaluate_l2p(source, students: list, n_prompts: int = 60, per_prompt: int = 4, seed: int = 0, steps=None,
                 cfg=None, features=None, progress: bool = True) -> dict:
    prompts = heldout_prompts(n_prompts)
    ref = sample_all(source, prompts, per_prompt, seed, steps, cfg, progress=progress)
    result = {"prompts": n_prompts, "per_prompt": per_prompt, "seed": seed,
              "source": {"name": source.name, **geneval_lite(ref, prompts, per_prompt)}, "students": {},
              "reference": reference(source.source, n_prompts * per_prompt, seed, source.cfg.size)}
    samples = {source.name: ref}
    ref_feats = features(ref) if features is not None else None
    for st in students:
        name = st.name if st.name not in samples else f"{st.name} #{len(samples) + 1}"  # columns need distinct names
        ims = sample_all(st, prompts, per_prompt, seed, steps, cfg, progress=progress)
        if ims.shape[-2:] != ref.shape[-2:]:  # a grown student (transfer --grow): scored at the source's size
            ims = F.interpolate(ims, size=ref.shape[-2:], mode="area")
        samples[name] = ims
        r = {"size": st.cfg.size, **geneval_lite(ims, prompts, per_prompt)}
        r["retention"] = retention(r["accuracy"], result["source"]["accuracy"])
        if features is not None:
            r["frechet_to_source"] = round(frechet_distance(features(ims), ref_feats), 4)
        result["students"][name] = r
    result["samples"] = samples
    return result


def retention(student_accuracy: float, source_accuracy: float) -> float | None:
    """Student accuracy / source accuracy; None (undefined) when the source passes nothing."""
    return round(student_accuracy / source_accuracy, 4) if source_accuracy > 0 else None


def markdown_table(result: dict) -> str:
    cats = list(result["source"]["by_category"])
    head = "| model | GenEval-lite | " + " | ".join(cats) + " | retention | Frechet to source |"
    lines = [head, "|---" * (len(cats) + 4) + "|"]
    s = result["source"]
    lines.append(f"| {s['name']} (source) | {s['accuracy']} | " + " | ".join(str(s["by_category"][c]) for c in cats)
                 + " | 1.0 | 0.0 |")
    for name, r in result["students"].items():
        lines.append(f"| {name} | {r['accuracy']} | " + " | ".join(str(r["by_category"].get(c, "")) for c in cats)
                     + f" | {'n/a' if r['retention'] is None else r['retention']} | {r.get('frechet_to_source', '')} |")
    ref = result.get("reference")
    if ref:
        rt = ref["roundtrip"]
        for name, r in ((f"truth renders (random scenes, n={ref['renders']['n']})", ref["renders"]),
                        (f"the same through {rt['source']} ({rt['psnr']} dB)", rt)):
            lines.append(f"| {name} | {r['accuracy']} | " + " | ".join(str(r["by_category"].get(c, "")) for c in cats)
                         + " | | |")
    return "\n".join(lines)
