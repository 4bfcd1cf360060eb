"""Round-trip quality of a latent source on a fixed set of crops: encode -> decode -> metrics."""
from __future__ import annotations

import time

import torch
from tqdm import tqdm

from pixdiff.eval import metrics


@torch.no_grad()
def evaluate_roundtrip(source, crops: torch.Tensor, names: list[str], batch: int = 4, progress: bool = True) -> dict:
    """crops: (N, 3, H, W) in [-1, 1]. Returns per-crop metrics, their means, and the reconstructions."""
    recon, t0 = [], time.perf_counter()
    for chunk in tqdm(crops.split(batch), desc=f"roundtrip {source.name}", disable=not progress, leave=False):
        recon.append(source.decode(source.encode(chunk)))
    seconds = time.perf_counter() - t0
    recon = torch.cat(recon)
    per = {"psnr": metrics.psnr(recon, crops), "ssim": metrics.ssim(recon, crops),
           "ms_ssim": metrics.ms_ssim(recon, crops), "ciede2000": metrics.ciede2000(recon, crops)}
    return {
        "source": source.name, "n": len(crops), "size": list(crops.shape[-2:]),
        "mean": {k: float(v.mean()) for k, v in per.items()},
        "per_crop": {n: {k: round(float(v[i]), 4) for k, v in per.items()} for i, n in enumerate(names)},
        "seconds_per_image": seconds / len(crops), "recon": recon,
    }
