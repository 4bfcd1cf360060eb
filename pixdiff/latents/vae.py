"""pixdiff's own VAE, `vae-f8c16`: a diffusers AutoencoderKL, 8x down, 16 latent channels (like FLUX.1 / SD3).

It is an ordinary diffusers folder, so it loads through the same code as any diffusers autoencoder; its latent
normalisation (shift / scaling factor, measured on the training photos after training) lives in its config.json.
"""
from __future__ import annotations

from diffusers import AutoencoderKL

PRESETS = {
    # tests: seconds on CPU
    "tiny": dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8),
    # shipped: 3.9M parameters, about 0.66 s per step of 8 crops of 128^2 on 2 CPU cores with bf16
    "small": dict(block_out_channels=(32, 64, 128, 128), layers_per_block=1, norm_num_groups=16),
}


def build_vae(preset: str = "small", latent_channels: int = 16) -> AutoencoderKL:
    if preset not in PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    n = len(cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        scaling_factor=1.0, shift_factor=0.0, force_upcast=False, **cfg,
    )
