"""`pixdiff train vae`: the VAE objective (L1 reconstruction + a small KL) on random photo crops."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pixdiff.data.crops import RandomCrops, step_generator
from pixdiff.latents.vae import build_vae
from pixdiff.train.loop import OptimConfig


@dataclass
class VAEConfig:
    preset: str = "small"
    crop: int = 128
    max_zoom: float = 4.0
    kl_weight: float = 1e-6  # per latent element, relative to the per-pixel L1: keeps the latent scale in check


TRAIN_PRESETS = {
    "tiny": (VAEConfig(preset="tiny", crop=32), OptimConfig(steps=20, batch=2, warmup=5, log_every=5)),
    # 10,000 steps: about 90 minutes on 2 idle CPU cores (0.53 s per step); shipped weights: extended to 15,000
    "small": (VAEConfig(preset="small", crop=128), OptimConfig(steps=10000, batch=8, lr=4e-4, warmup=300)),
}


class VAETask:
    def __init__(self, cfg: VAEConfig, data_folders):
        self.cfg = cfg
        self.model = build_vae(cfg.preset)
        self.data = RandomCrops(data_folders, cfg.crop, cfg.max_zoom)

    def batch(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.data.sample(n, generator)

    def loss(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator):
        # x: (B, 3, H, W) in [-1, 1]
        post = model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=generator)  # (B, 16, H/8, W/8)
        y = model.decode(z).sample.float()
        l1 = (y - x).abs().mean()
        kl = post.kl().float().mean() / z[0].numel()
        return l1 + self.cfg.kl_weight * kl, {"l1": l1.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Save the EMA weights as an fp16 diffusers folder, with the latent shift / scale measured on training
        crops so that the normalised latents have mean 0 and std 1 (the FLUX.1 convention)."""
        model = model.float().eval()
        x = self.data.sample(32, step_generator(12345, 0))
        z = torch.cat([model.encode(c).latent_dist.mode() for c in x.split(8)])
        model.register_to_config(shift_factor=float(z.mean()), scaling_factor=float(1.0 / z.std()))
        model.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
        model.float()
