"""PiD's sigma-aware latent adapter: latents -> one feature map per injection point of the pixel DiT, each added to
the patch tokens through a gate that closes as the latent's noise level sigma grows.

    h <- h + g * f_i,   g = sigmoid(W [h; f_i] + b - e^a * sigma),   b = 2, a = ln 5 at initialisation,

so g is about 0.88 for a clean latent, 0.5 at sigma = 0.4 and 0.05 at sigma = 1. The heads producing f_i are
zero-initialised (the adapter starts as a no-op); the gates are not, to avoid a dead zone next to the zero heads.

With `aux_rgb` (PiD v1.5), a small head also predicts the low-resolution RGB image: a training loss that makes the
latent branch carry the latent's colours from the start (v1.5 added it against colour drift). `rgb_head="linear"` is
v1.5's per-token head on the trunk; `"decoder"` a VAE-decoder-shaped net on the latents themselves (nn/lq_decoder.py);
`"taef2"` a trainable copy of TAEF2's own decoder (for TAEF2 latents); the "-sigma" variants of both use the trained
head for noisy latents and the source's decoder as it is for clean ones;
`"identity"` passes through a "latent" that already is the LQ image (the cascades, conditioned on a decoded image).
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from pixdiff.nn.lq_decoder import LQDecoder, TAEF2Head


def align_ratio(latent_factor: int, scale: int, patch: int) -> Fraction:
    """r = output pixels per latent cell / patch size: > 1 upsample the latent grid, < 1 fold it into channels."""
    return Fraction(latent_factor * scale, patch)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(4, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1, padding_mode="replicate"),
                                  nn.GroupNorm(4, c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1, padding_mode="replicate"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LatentAdapter(nn.Module):
    def __init__(self, latent_channels: int, latent_factor: int, scale: int, patch: int, dim: int,
                 n_inject: int, hidden: int = 128, n_blocks: int = 2, aux_rgb: bool = False,
                 rgb_head: str = "linear"):
        super().__init__()
        r = align_ratio(latent_factor, scale, patch)
        if r >= 1 and r.denominator != 1 or r < 1 and (1 / r).denominator != 1:
            raise ValueError(f"latent factor {latent_factor} x scale {scale} does not align with patch {patch}")
        self.up = int(r) if r >= 1 else 1
        self.fold = int(1 / r) if r < 1 else 1
        c_in = latent_channels * self.fold**2
        self.trunk = nn.Sequential(
            nn.Conv2d(c_in, hidden, 3, padding=1, padding_mode="replicate"), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate"), *[ResBlock(hidden) for _ in range(n_blocks)])
        self.heads = nn.ModuleList(nn.Linear(hidden, dim) for _ in range(n_inject))
        self.gates = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(n_inject))
        self.log_slope = nn.Parameter(torch.full((n_inject,), math.log(5.0)))  # a
        if rgb_head not in ("linear", "decoder", "decoder-sigma", "taef2", "taef2-sigma", "identity"):
            raise ValueError(f"rgb_head must be 'linear', 'decoder', 'decoder-sigma', 'taef2', 'taef2-sigma' or "
                             f"'identity', got {rgb_head!r}")
        if aux_rgb and rgb_head == "identity" and (latent_channels, latent_factor) != (3, 1):
            raise ValueError("rgb_head='identity' needs a decoded image (3 channels, factor 1) as its input")
        self.aux_pixels = patch // scale if aux_rgb else 0  # low-resolution pixels per token side
        if aux_rgb and rgb_head == "linear" and patch % scale:
            raise ValueError(f"aux_rgb needs the patch {patch} to be a multiple of the scale {scale}")
        self.rgb_head, self.aux = rgb_head, None
        if aux_rgb and rgb_head == "linear":
            self.aux = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, 3 * self.aux_pixels**2))
        elif aux_rgb and rgb_head == "identity":
            self.aux = nn.Identity()
        elif aux_rgb and rgb_head in ("taef2", "taef2-sigma"):
            self.aux = TAEF2Head(latent_channels, latent_factor, sigma_aware=rgb_head == "taef2-sigma")
        elif aux_rgb:
            self.aux = LQDecoder(latent_channels, latent_factor, sigma_aware=rgb_head == "decoder-sigma")
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        for gate in self.gates:
            nn.init.trunc_normal_(gate.weight, std=0.01)
            nn.init.constant_(gate.bias, 2.0)  # b

    def trunk_map(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, hidden, h r, w r) on the patch grid."""
        z = latents
        if self.up > 1:
            z = F.interpolate(z, scale_factor=self.up, mode="nearest")  # (B, C, h r, w r)
        if self.fold > 1:
            z = F.pixel_unshuffle(z, self.fold)  # (B, C fold^2, h / fold, w / fold)
        return self.trunk(z)

    def features(self, latents: torch.Tensor | None = None, trunk: torch.Tensor | None = None) -> list[torch.Tensor]:
        """(B, C, h, w) latents (or their trunk map) -> n_inject maps of patch tokens (B, N, dim), N = (h r)(w r)."""
        trunk = self.trunk_map(latents) if trunk is None else trunk
        tokens = trunk.flatten(2).transpose(1, 2)  # (B, N, hidden)
        return [head(tokens) for head in self.heads]

    def aux_rgb(self, latents: torch.Tensor, trunk: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted low-resolution image (B, 3, h f, w f) from the latents (B, C, h, w) ("decoder" heads) or
        their (B, hidden, gh, gw) trunk map ("linear": a = patch / scale pixels per token side). sigma (B,): the
        latents' noise level, read by the "-sigma" heads (None: clean)."""
        if self.rgb_head == "identity":
            return self.aux(latents)
        if self.rgb_head != "linear":
            return self.aux(latents, sigma)
        y = self.aux(trunk.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, 3 a^2, gh, gw)
        return F.pixel_shuffle(y, self.aux_pixels)

    def gate(self, i: int, h: torch.Tensor, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """g for injection point i: h, f (B, N, dim), sigma (B,) -> (B, N, dim)."""
        logits = self.gates[i](torch.cat([h, f], dim=-1)) - self.log_slope[i].exp() * sigma.view(-1, 1, 1)
        return torch.sigmoid(logits)

    def inject(self, i: int, h: torch.Tensor, f: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return h + self.gate(i, h, f, sigma) * f
