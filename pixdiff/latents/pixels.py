"""`pixels`: a latent source with no weights: pixel-unshuffle by f (C = 3 f^2). Exact round trip; for tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pixdiff.latents.base import check_images, check_latents


class PixelSource:
    def __init__(self, factor: int = 8):
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = factor
        self.channels = 3 * factor * factor
        self.name = "pixels" if factor == 8 else f"pixels-f{factor}"

    def to(self, *args, **kw) -> "PixelSource":  # no weights: any device
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.factor)
        return F.pixel_unshuffle(images, self.factor)  # (B, 3 f^2, H/f, W/f)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, self.channels, self.name)
        return F.pixel_shuffle(latents, self.factor)  # (B, 3, H, W)
