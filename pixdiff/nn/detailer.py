"""L2P's Detailer Head: a small conv U-Net over the full-resolution noisy image whose bottleneck sits on the
transformer's token grid and receives the token map. Its 3x3 convolutions cross patch borders, and its output is
the model's output (the pixel-space velocity, zero at initialisation).

    x (B, 3, H, W) -> [3x3 conv, SiLU, 2x max-pool] x stages -> (B, c_last, H/P, W/P)
    concat token map (B, D, H/P, W/P) -> 1x1 conv -> SiLU
    -> [nearest 2x up, 3x3 conv, concat skip, 3x3 conv, SiLU] x stages -> 1x1 conv -> (B, 3, H, W)

P = 2^stages is the pixel patch of the transformer. No normalisation and no time input: the timestep reaches the
head through the token map, as in L2P.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DetailerHead(nn.Module):
    def __init__(self, token_dim: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.channels = tuple(channels)
        c_in = [3, *channels[:-1]]
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(c_in, channels))
        self.fuse = nn.Conv2d(channels[-1] + token_dim, channels[-1], 1)
        ups = list(reversed(channels))  # e.g. 128 -> 64 -> 32 -> 16 -> 16
        outs = [*ups[1:], channels[0]]
        self.up = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(ups, outs))
        self.merge = nn.ModuleList(nn.Conv2d(b + s, b, 3, padding=1) for b, s in zip(outs, reversed(channels)))
        self.out = nn.Conv2d(channels[0], 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def patch(self) -> int:
        return 2 ** len(self.channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) noisy image; tokens: (B, D, H/P, W/P). Returns (B, 3, H, W)."""
        skips = []
        h = x
        for conv in self.down:
            h = F.silu(conv(h))
            skips.append(h)  # (B, c_i, H/2^i, W/2^i)
            h = F.max_pool2d(h, 2)
        if tokens.shape[-2:] != h.shape[-2:]:
            tokens = F.interpolate(tokens, size=h.shape[-2:], mode="nearest")
        h = F.silu(self.fuse(torch.cat([h, tokens.to(h.dtype)], 1)))  # (B, c_last, H/P, W/P)
        for conv, merge, skip in zip(self.up, self.merge, reversed(skips)):
            h = conv(F.interpolate(h, scale_factor=2, mode="nearest"))
            h = F.silu(merge(torch.cat([h, skip], 1)))
        return self.out(h)


class LinearHead(nn.Module):
    """The ablation of the Detailer Head: a linear unpatchify of each token into its P x P x 3 pixels (what a
    latent DiT's final layer does), zero at initialisation. Same interface; it ignores the noisy image."""

    def __init__(self, token_dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(token_dim, 3 * patch * patch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, D, H/P, W/P) -> (B, 3, H, W)."""
        return F.pixel_shuffle(self.proj(tokens.to(x.dtype)), self.patch)
