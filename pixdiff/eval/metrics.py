"""Image quality metrics. Inputs are (B, 3, H, W) float images in [-1, 1]; every metric returns one value per image (B,).

PSNR / SSIM / MS-SSIM come from torchmetrics, CIEDE2000 from scikit-image; the high-frequency scores and the
Frechet distance are ours (torchmetrics' FID would need Inception weights, which cannot be downloaded here).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import deltaE_ciede2000, rgb2lab
from torchmetrics.functional.image import (multiscale_structural_similarity_index_measure, peak_signal_noise_ratio,
                                           structural_similarity_index_measure)

from pixdiff.errors import InputError


def _01(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().add(1).div(2).clamp(0, 1)


def _check_pair(pred: torch.Tensor, ref: torch.Tensor) -> None:
    if pred.shape != ref.shape or pred.ndim != 4:
        raise InputError(f"metrics need two (B, C, H, W) batches of the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(ref.shape)}")


def psnr(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over [0, 1] pixel values."""
    _check_pair(pred, ref)
    return peak_signal_noise_ratio(_01(pred), _01(ref), data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Structural similarity (Gaussian window 11, sigma 1.5)."""
    _check_pair(pred, ref)
    return structural_similarity_index_measure(_01(pred), _01(ref), data_range=1.0, reduction="none")


def ms_ssim(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM with the standard five scales; needs images of at least 161 pixels a side (NaN below)."""
    _check_pair(pred, ref)
    if min(pred.shape[-2:]) <= 160:
        return torch.full((pred.shape[0],), float("nan"))
    return multiscale_structural_similarity_index_measure(_01(pred), _01(ref), data_range=1.0, reduction="none")


def ciede2000(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 colour difference per image (0 = identical; about 2.3 is a just-noticeable difference)."""
    _check_pair(pred, ref)
    to_lab = lambda x: rgb2lab(_01(x).permute(0, 2, 3, 1).cpu().numpy().astype(np.float64), channel_axis=-1)  # noqa: E731
    de = deltaE_ciede2000(to_lab(pred), to_lab(ref), channel_axis=-1)  # (B, H, W)
    return torch.from_numpy(de.reshape(de.shape[0], -1).mean(1)).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian low-pass (reflect padding), (B, C, H, W) -> same."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def highpass(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """The detail layer: the image minus its Gaussian low-pass (sigma in pixels)."""
    x = x.detach().float()
    return x - gaussian_blur(x, sigma)


def hf_energy_ratio(pred: torch.Tensor, ref: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """High-frequency fidelity: energy of pred's detail layer over the reference's. 1 = as much fine detail as the
    truth; < 1 blurry, > 1 noisy or over-sharpened. log2 of it is the distance to compare methods by."""
    _check_pair(pred, ref)
    e = lambda x: highpass(x, sigma).square().flatten(1).mean(1)  # noqa: E731
    return e(pred) / e(ref).clamp(min=1e-12)


def hf_correlation(pred: torch.Tensor, ref: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Correlation of the detail layers: is pred's detail the truth's detail (1), unrelated (0)?"""
    _check_pair(pred, ref)
    a, b = highpass(pred, sigma).flatten(1), highpass(ref, sigma).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), computed in float64 with symmetric square roots."""
    a, b = feats_a.double(), feats_b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"frechet_distance: expected (N, D) features, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise InputError("frechet_distance: needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)

    def sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    ra = sqrtm_psd(s_a)
    cross = torch.linalg.eigvalsh(ra @ s_b @ ra).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)


def blockiness(x: torch.Tensor, period: int = 16) -> torch.Tensor:
    """Patch-grid visibility: mean |gradient| across the lines of a `period`-pixel grid (between pixel k*period - 1
    and k*period) over the mean |gradient| everywhere else, horizontal and vertical together. About 1.0 for natural
    images; a model that renders each patch on its own shows > 1. (B, C, H, W) -> (B,)."""
    x = x.detach().float()
    if x.shape[-1] <= period or x.shape[-2] <= period:
        raise InputError(f"blockiness: image {x.shape[-1]}x{x.shape[-2]} has no interior {period}-pixel grid line")
    gx = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2))  # (B, W-1): gradient between column j and j+1
    gy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 3))  # (B, H-1)
    on_x = torch.zeros(gx.shape[1], dtype=torch.bool)
    on_x[period - 1 :: period] = True
    on_y = torch.zeros(gy.shape[1], dtype=torch.bool)
    on_y[period - 1 :: period] = True
    grid = torch.cat([gx[:, on_x], gy[:, on_y]], 1).mean(1)
    rest = torch.cat([gx[:, ~on_x], gy[:, ~on_y]], 1).mean(1)
    return grid / rest.clamp(min=1e-12)
