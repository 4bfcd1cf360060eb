"""The latent generator's network: diffusers' `ZImageTransformer2DModel` (the family L2P transfers) at a small size.

Z-Image's own conventions are kept inside this module: its time input is 1 - t (1 = clean) and its output is the
negative of pixdiff's velocity (x0 - eps), as in diffusers' ZImagePipeline. Everything outside sees pixdiff's
convention (t = 1 is noise, v = eps - x0).
"""
from __future__ import annotations

import torch
from torch import nn

PRESETS = {
    "tiny": dict(dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, axes_dims=[4, 6, 6],
                 axes_lens=[128, 32, 32]),
    # 6.3M parameters, 12.6 MB in fp16
    "small": dict(dim=192, n_layers=8, n_refiner_layers=1, n_heads=3, n_kv_heads=3, axes_dims=[16, 24, 24],
                  axes_lens=[128, 64, 64]),
}


def build_zimage(preset: str, latent_channels: int, text_dim: int, patch: int = 2):
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel(all_patch_size=(patch,), in_channels=latent_channels, cap_feat_dim=text_dim,
                                    **PRESETS[preset])


class ZImageVelocity(nn.Module):
    """v(x, t, captions) in pixdiff's convention around a ZImageTransformer2DModel."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.patch = transformer.config.all_patch_size[0]

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> torch.Tensor:
        """x: (B, C, h, w) noisy latents; t: (B,); captions: B tensors (L_i, text_dim). Returns (B, C, h, w)."""
        frames = list(x.unsqueeze(2).unbind(0))  # Z-Image takes a list of (C, F=1, h, w)
        out = self.transformer(frames, 1 - t, [c.to(x.dtype) for c in captions], patch_size=self.patch,
                               return_dict=False)[0]
        return -torch.stack(out).squeeze(2).to(x.dtype)
