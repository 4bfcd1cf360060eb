"""The LatentSource protocol: what every latent space looks like to the rest of pixdiff.

encode: images (B, 3, H, W) in [-1, 1] -> latents (B, C, H/f, W/f), already normalised (the source owns every
scaling / shift / batch-norm statistic); decode: the inverse direction. Nothing outside a source ever rescales latents.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from pixdiff.errors import InputError


@runtime_checkable
class LatentSource(Protocol):
    name: str  # what decoders trained on this space record, e.g. "vae-f8c16", "taef2"
    channels: int  # C
    factor: int  # f: spatial down-sampling

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    def to(self, *args, **kw) -> "LatentSource": ...  # like nn.Module.to: moves the weights, returns self


def check_images(images: torch.Tensor, factor: int, what: str = "images") -> None:
    """Images must be (B, 3, H, W), finite, with H and W multiples of the latent factor."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"{what}: expected (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h < factor or w < factor:
        raise InputError(f"{what}: {w}x{h} is smaller than one latent cell ({factor}x{factor} pixels)")
    if h % factor or w % factor:
        raise InputError(f"{what}: {w}x{h} is not a multiple of the latent factor {factor} (crop or pad first)")
    if not torch.isfinite(images).all():
        raise InputError(f"{what}: contains NaN or Inf")


def check_latents(latents: torch.Tensor, channels: int, source: str) -> None:
    """Latents must be (B, C, h, w) with the source's channel count, and finite."""
    if latents.ndim != 4:
        raise InputError(f"latents for {source}: expected (B, C, h, w), got shape {tuple(latents.shape)}")
    if latents.shape[1] != channels:
        raise InputError(f"latents have {latents.shape[1]} channels but {source} latents have {channels}: "
                         "they come from a different latent source")
    if not torch.isfinite(latents).all():
        n = int((~torch.isfinite(latents)).sum())
        raise InputError(f"latents for {source}: {n} of {latents.numel()} values are NaN or Inf")


def crop_to_multiple(images: torch.Tensor, factor: int) -> tuple[torch.Tensor, bool]:
    """Centre-crop H and W down to multiples of factor. Returns (images, whether anything was cropped)."""
    h, w = images.shape[-2:]
    h2, w2 = h // factor * factor, w // factor * factor
    if (h2, w2) == (h, w):
        return images, False
    if h2 == 0 or w2 == 0:
        raise InputError(f"image {w}x{h} is smaller than one latent cell ({factor}x{factor} pixels)")
    top, left = (h - h2) // 2, (w - w2) // 2
    return images[..., top : top + h2, left : left + w2], True
