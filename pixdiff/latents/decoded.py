"""`<source>-decoded`: a source's own decoded image as the "latent" (factor 1, 3 channels). What the cascades of
`pixdiff eval decode` super-resolve, so that they train and run through the same code as PiD."""
from __future__ import annotations

import torch

from pixdiff.latents.base import check_latents


class DecodedSource:
    factor, channels = 1, 3

    def __init__(self, inner):
        self.inner = inner
        self.name = f"{inner.name}-decoded"

    def to(self, *args, **kw) -> "DecodedSource":
        self.inner.to(*args, **kw)
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(self.inner.encode(images)).clamp(-1, 1)  # (B, 3, H, W)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, 3, self.name)
        return latents
