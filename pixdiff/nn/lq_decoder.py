"""The adapter's low-resolution RGB estimate as a VAE-decoder-shaped conv net (`rgb_head="decoder"`).

PiD v1.5's aux head is one linear map per token. At our scale that head stays 4-5 dB behind the source's own decoder
in LQ PSNR, and everything PiD draws inherits its colours. This head has the shape of pixdiff's small VAE decoder
(a diffusers `Decoder`: conv in, attention mid block, one up block per factor of 2) and can start from that decoder's
weights (`init_from_vae`), so the latent -> LQ mapping is right from the first step and training only has to make
it robust to noisy latents. For a source with another channel count (taef2: 32) only the input layers are new
(TAEF2Head below is the better start for taef2). With `sigma_aware` ("decoder-sigma", "taef2-sigma") a frozen copy of
the source's decoder makes the estimate for clean latents and the trainable one only sees noisy latents: fine-tuning
for noise costs the clean estimate (docs/benchmarks.md), and every decode knows its latents' sigma.

    latents (B, C, h, w) -> latent_in (1x1: undoes the source's normalisation) -> Decoder -> (B, 3, h f, w f)
"""
from __future__ import annotations

import math

import torch
from diffusers.models.autoencoders.vae import Decoder
from torch import nn

from pixdiff.latents.taef2 import TAEF2, taef2_decoder

# pixdiff's small VAE decoder (latents/vae.py, preset "small")
CHANNELS = (32, 64, 128, 128)
GROUPS = 16


def split_by_sigma(latents: torch.Tensor, sigma: torch.Tensor | None, clean, noisy) -> torch.Tensor:
    """clean(latents) where sigma == 0 (or sigma is None), noisy(latents) elsewhere; (B, C, h, w) -> (B, 3, H, W)."""
    b = latents.shape[0]
    is_clean = torch.ones(b, dtype=torch.bool, device=latents.device) if sigma is None else sigma == 0  # (B,)
    if is_clean.all():
        return clean(latents)
    if not is_clean.any():
        return noisy(latents)
    c, n = clean(latents[is_clean]), noisy(latents[~is_clean])
    out = c.new_empty(b, *c.shape[1:])
    out[is_clean], out[~is_clean] = c, n.to(out.dtype)
    return out


class LQDecoder(nn.Module):
    def __init__(self, latent_channels: int, factor: int, sigma_aware: bool = False):
        super().__init__()
        n_up = int(math.log2(factor)) if factor > 1 else 0
        if factor < 2 or 2**n_up != factor or n_up + 1 > len(CHANNELS):
            raise ValueError(f"rgb_head='decoder' needs a latent factor of 2, 4 or 8, got {factor}")
        channels = CHANNELS[: n_up + 1]
        self.latent_in = nn.Conv2d(latent_channels, latent_channels, 1)
        nn.init.eye_(self.latent_in.weight.view(latent_channels, latent_channels))
        nn.init.zeros_(self.latent_in.bias)
        self.decoder = Decoder(in_channels=latent_channels, out_channels=3, up_block_types=("UpDecoderBlock2D",) *
                               len(channels), block_out_channels=channels, layers_per_block=1, norm_num_groups=GROUPS)
        self.clean = LQDecoder(latent_channels, factor).requires_grad_(False) if sigma_aware else None

    def forward(self, latents: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, h, w) normalised latents at noise level sigma (B,) (None: clean) -> (B, 3, h f, w f) RGB estimate
        in about [-1, 1]."""
        def noisy(z: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.latent_in(z))

        return noisy(latents) if self.clean is None else split_by_sigma(latents, sigma, self.clean, noisy)


@torch.no_grad()
def init_from_vae(head: LQDecoder, source) -> list[str]:
    """Copy a diffusers AutoencoderKL source's decoder into `head` wherever name and shape match, folding the
    source's normalisation z_raw = z * std + mean and its post_quant_conv into `latent_in` (both copies of a
    sigma-aware head). Returns the names copied."""
    vae = getattr(source, "vae", None)
    if vae is None or type(vae).__name__ != "AutoencoderKL":
        raise ValueError(f"rgb_init needs a diffusers AutoencoderKL source, not {getattr(source, 'name', source)!r}")
    theirs = vae.decoder.state_dict()
    copied = []
    for name, t in head.decoder.state_dict().items():
        if name in theirs and theirs[name].shape == t.shape:
            t.copy_(theirs[name].float())
            copied.append(f"decoder.{name}")
    pq = vae.post_quant_conv
    if pq is not None and pq.weight.shape == head.latent_in.weight.shape:
        w = pq.weight.float()[..., 0, 0]  # (C, C)
        std, mean = float(source.std), float(source.mean)
        head.latent_in.weight.copy_((w * std)[..., None, None])
        head.latent_in.bias.copy_(pq.bias.float() + w.sum(1) * mean)
        copied += ["latent_in.weight (post_quant_conv, normalisation folded)", "latent_in.bias"]
    if head.clean is not None:
        copied += [f"clean.{name}" for name in init_from_vae(head.clean, source)]
    return copied


class TAEF2Head(nn.Module):
    """`rgb_head="taef2"`: a trainable copy of TAEF2's own decoder as the LQ estimate (`init_from_taef2` loads the
    source's weights). The "decoder" head has to learn TAEF2's latent space from scratch (only vae-f8c16's layers
    after the input carry over) and stayed 3 dB of LQ PSNR behind TAEF2's decoder after eight training stages; this
    one starts at the decoder itself, so training only has to make it robust to noisy latents."""

    def __init__(self, latent_channels: int, factor: int, sigma_aware: bool = False):
        super().__init__()
        if (latent_channels, factor) != (TAEF2.channels, TAEF2.factor):
            raise ValueError(f"rgb_head='taef2' needs TAEF2's latents ({TAEF2.channels} channels at 1/{TAEF2.factor}), "
                             f"got {latent_channels} channels at 1/{factor}")
        self.decoder = taef2_decoder()
        # "taef2-sigma": fine-tuning for noisy latents costs the clean estimate 0.4 dB and detail (docs/benchmarks.md),
        # so clean latents (sigma = 0) keep a frozen copy of TAEF2's decoder as it is
        self.clean = taef2_decoder().requires_grad_(False) if sigma_aware else None

    def forward(self, latents: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 32, h, w) TAEF2 latents at noise level sigma (B,) (None: clean) -> (B, 3, 8h, 8w) RGB estimate in
        about [-1, 1] (TAEF2 decodes to [0, 1])."""
        out = self.decoder(latents) if self.clean is None else split_by_sigma(latents, sigma, self.clean, self.decoder)
        return out.mul(2).sub(1)


@torch.no_grad()
def init_from_taef2(head: TAEF2Head, source) -> None:
    """Copy the TAEF2 source's decoder weights into `head` (both copies of a sigma-aware head)."""
    if getattr(source, "name", None) != "taef2":
        raise ValueError(f"rgb_init='taef2' needs the taef2 source, not {getattr(source, 'name', source)!r}")
    for d in (head.decoder, head.clean):
        if d is not None:
            d.load_state_dict(source.decoder.state_dict())
