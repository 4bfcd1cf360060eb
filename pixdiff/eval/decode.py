"""`pixdiff eval decode`: PiD against the decode-then-upscale cascades it replaces, on the same crops.

For each HQ crop: LQ = HQ down by the scale (anti-aliased bicubic), z = E(LQ). Methods:
  (a) the source's decoder + bicubic up;  (b) the source's decoder + a regression SR net;
  (c) the source's decoder + a diffusion SR model (the same pixel DiT, conditioned on the decoded image);
  (d) PiD on z, and on z noised to sigma (early termination of a latent generator).
Metrics against HQ: PSNR, SSIM, high-frequency energy (log2 ratio to the truth's) and correlation, blockiness
(16-pixel grid), Frechet distance of taef2-stats features on 64x64 tiles; against LQ: PSNR and CIEDE2000 of the
output taken back down by the scale. Plus network evaluations, seconds per image (batches of `batch`) and the
peak memory one image adds.
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import resource
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from pixdiff.data.images import downsample, resize
from pixdiff.decoder.pid import DEFAULT_STEPS
from pixdiff.eval import metrics
from pixdiff.flow.time import interpolate

TILE = 64


@dataclass
class Method:
    name: str
    nfe: int  # network evaluations per image
    run: Callable[[dict, torch.Generator], torch.Tensor]  # batch -> (B, 3, H, W) in [-1, 1]


def build_methods(source, pid, regression=None, cascade=None, steps: int = DEFAULT_STEPS, sampler: str = "euler",
                  sigmas=(0.1, 0.2, 0.4), temperature: float | None = None, latent_guidance: float | None = None,
                  back_projection: int | None = None) -> list[Method]:
    """temperature / latent_guidance: None leaves each decoder its release's own (`PiDDecoder.sampling`)."""
    scale = pid.cfg.scale
    kw = {"steps": steps, "sampler": sampler, "temperature": temperature, "latent_guidance": latent_guidance,
          "back_projection": back_projection}  # the same for every network: (b), (c) onto their decoded input

    def nfe(dec) -> int:  # network calls per image: Heun and latent guidance each double them
        guided = dec.sampling(temperature, latent_guidance)[1] != 1
        return steps * (2 if sampler == "heun" else 1) * (2 if guided else 1)

    def bicubic(b, g):
        d = b["decoded"]
        return resize(d, (d.shape[-2] * scale, d.shape[-1] * scale)).clamp(-1, 1)

    methods = [Method("(a) decode + bicubic", 0, bicubic)]
    if regression is not None:
        methods.append(Method("(b) decode + regression SR", 1, lambda b, g: regression.decode(
            b["decoded"], back_projection=back_projection)))
    if cascade is not None:
        methods.append(Method("(c) decode + diffusion SR", nfe(cascade), lambda b, g: cascade.decode(
            b["decoded"], generator=g, **kw)))
    if pid.model.adapter.aux is not None:  # what the adapter reads from the latent alone, before any DiT call
        def lq_estimate(b, g):
            lq = pid.model.latent_branch(b["z"])[1].float()
            return resize(lq, (lq.shape[-2] * scale, lq.shape[-1] * scale)).clamp(-1, 1)
        methods.append(Method("(d) PiD's LQ estimate + bicubic", 0, lq_estimate))
    methods.append(Method("(d) PiD", nfe(pid), lambda b, g: pid.decode(b["z"], generator=g, **kw)))
    for s in sigmas:
        def noised(b, g, s=s):
            z = interpolate(b["z"], torch.randn(b["z"].shape, generator=g), s)
            return pid.decode(z, sigma=s, generator=g, **kw)
        methods.append(Method(f"(d) PiD, sigma={s}", nfe(pid), noised))
    return methods


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(fn, device: str = "cpu", timeout: float = 300) -> float:
    """Peak memory that one call of fn adds, in MiB. CUDA: the allocator's peak above its starting point. CPU: fn
    runs once in a forked child (Linux), whose peak resident set is compared with its size at the fork; a fresh
    process, because an allocator that already served fn keeps its pages and would show no growth."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def child():
        torch.set_num_threads(1)  # the parent's OpenMP thread pool does not survive fork(): one thread here
        start = _rss_bytes()
        fn()
        queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start) / 2**20)

    proc = ctx.Process(target=child)
    proc.start()
    try:
        return queue.get(timeout=timeout)
    except queue_module.Empty:
        warnings.warn(f"peak memory: the measuring process gave no answer in {timeout} s", stacklevel=2)
        return float("nan")
    finally:
        proc.kill()
        proc.join()


def tiles(x: torch.Tensor, size: int = TILE) -> torch.Tensor:
    """(B, 3, H, W) -> (B * H/size * W/size, 3, size, size)."""
    b, c = x.shape[:2]
    t = x.unfold(2, size, size).unfold(3, size, size)  # (B, C, nh, nw, size, size)
    return t.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)


@torch.no_grad()
def evaluate_decode(source, methods: list[Method], crops: torch.Tensor, names: list[str], scale: int,
                    features=None, batch: int = 4, seed: int = 0, progress: bool = True) -> dict:
    """crops: (N, 3, H, W) HQ in [-1, 1]. Returns {"methods": {name: metrics}, "truth": ..., "outputs": ...}."""
    lq = downsample(crops, scale)
    z = torch.cat([source.encode(c) for c in lq.split(batch)])
    decoded = torch.cat([source.decode(c).clamp(-1, 1) for c in z.split(batch)])
    results, outputs = {}, {}
    feats_hq = features(tiles(crops)) if features is not None else None
    for m in methods:
        g = torch.Generator().manual_seed(seed)
        outs, seconds = [], 0.0
        for i in tqdm(range(0, len(crops), batch), desc=m.name, disable=not progress, leave=False):
            b = {"z": z[i : i + batch], "decoded": decoded[i : i + batch]}
            t0 = time.perf_counter()
            outs.append(m.run(b, g).float())
            seconds += time.perf_counter() - t0
        one = {"z": z[:1], "decoded": decoded[:1]}
        mem_mb = peak_memory_mb(lambda: m.run(one, torch.Generator().manual_seed(seed)))  # one image
        y = torch.cat(outs)
        outputs[m.name] = y
        r = scores(y, crops, lq, scale, features, feats_hq)
        r.update(nfe=m.nfe, seconds_per_image=round(seconds / len(crops), 4), peak_memory_mb=round(mem_mb, 1))
        results[m.name] = r
    # What the latent lost: the real LQ image, bicubic up. No method sees it; its detail scores bound what any
    # decoder of a lossy latent can reach without inventing.
    reference = scores(resize(lq, crops.shape[-2:]).clamp(-1, 1), crops, lq, scale, features, feats_hq)
    truth = {"blockiness": round(float(metrics.blockiness(crops).mean()), 4)}
    return {"n": len(crops), "size": list(crops.shape[-2:]), "scale": scale, "source": source.name,
            "features": getattr(features, "name", None), "frechet_tile": TILE, "methods": results,
            "reference": {REFERENCE: reference}, "truth": truth, "outputs": outputs, "lq": lq, "names": names}


def scores(y, crops, lq, scale, features=None, feats_hq=None) -> dict:
    """Every quality column of one method's outputs y (N, 3, H, W) against the HQ crops and their LQ."""
    y_lq = downsample(y, scale)
    hf = metrics.hf_energy_ratio(y, crops).clamp(min=1e-12).log2()
    r = {"psnr": metrics.psnr(y, crops).mean(), "ssim": metrics.ssim(y, crops).mean(),
         "lq_psnr": metrics.psnr(y_lq, lq).mean(), "lq_ciede2000": metrics.ciede2000(y_lq, lq).mean(),
         "hf_log2_ratio": hf.mean(), "hf_log2_distance": hf.abs().mean(),
         "hf_correlation": metrics.hf_correlation(y, crops).mean(), "blockiness": metrics.blockiness(y).mean()}
    r = {k: round(float(v), 4) for k, v in r.items()}
    if features is not None:
        r["frechet"] = round(metrics.frechet_distance(features(tiles(y)), feats_hq), 4)
    return r


REFERENCE = "real LQ + bicubic (reference: no latent)"
COLUMNS = [("psnr", "PSNR"), ("ssim", "SSIM"), ("lq_psnr", "LQ PSNR"), ("lq_ciede2000", "LQ CIEDE"),
           ("hf_log2_distance", "HF |log2|"), ("hf_correlation", "HF corr"), ("frechet", "Frechet"),
           ("blockiness", "grid"), ("nfe", "NFE"), ("seconds_per_image", "s/img"), ("peak_memory_mb", "peak MB")]


def markdown_table(result: dict) -> str:
    cols = [(k, h) for k, h in COLUMNS if any(k in r for r in result["methods"].values())]
    lines = ["| method | " + " | ".join(h for _, h in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in {**result["methods"], **result.get("reference", {})}.items():
        lines.append(f"| {name} | " + " | ".join(str(r.get(k, "")) for k, _ in cols) + " |")
    lines.append("| truth | " + " | ".join("0.0" if k == "hf_log2_distance" else "1.0" if k == "hf_correlation"
                                            else str(result["truth"].get(k, "")) for k, _ in cols) + " |")
    return "\n".join(lines)
