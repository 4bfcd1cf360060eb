"""Image features for the Frechet distance.

No ImageNet network can be downloaded here, so the feature network is the one pretrained image network we have:
the TAEF2 encoder. `taef2-stats` features are the per-channel mean and standard deviation of its activations
after each of its four stages (full, 1/2, 1/4, 1/8 resolution; 64 channels each): 512 numbers per image that
describe colour, texture and detail statistics at four scales. Frechet distances on them are comparable with each
other, not with published FID values (which use Inception-v3 pool features).
"""
from __future__ import annotations

import torch

from pixdiff.latents.taef2 import TAEF2

STAGE_ENDS = (1, 5, 9, 13)  # indices of the encoder layers whose outputs are pooled


class TAEF2Features:
    name = "taef2-stats"
    dim = 2 * 64 * len(STAGE_ENDS)

    def __init__(self, weights=None):
        self.encoder = TAEF2(weights).encoder

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 512)."""
        x, feats = images.float().add(1).div(2), []
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i in STAGE_ENDS:
                f = x.flatten(2)
                feats += [f.mean(2), f.std(2)]
            if i == STAGE_ENDS[-1]:
                break
        return torch.cat(feats, 1)
