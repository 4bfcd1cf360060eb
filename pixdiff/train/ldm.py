"""`pixdiff train ldm`: the text-to-image latent generator on the shapes world (or on a synthetic set).

Scenes come from an endless seeded stream, or (pool > 0) from a pool of that many scenes rendered and encoded once
at the start (rendering and VAE-encoding every step costs more than the small transformer's step); the pool is
kept in the run folder (`pool.pt`) so that a resumed run does not encode it again. The task
trains the Z-Image transformer with the flow-matching velocity loss at logit-normal t (with the preset's shift), with 10%
of captions dropped to the empty prompt so that classifier-free guidance works.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pixdiff.data.shapes import scene_batch
from pixdiff.flow.loss import flow_matching_loss
from pixdiff.flow.schedule import sample_t_logit_normal
from pixdiff.ldm.generator import GeneratorConfig
from pixdiff.ldm.text import CaptionStates, TextEncoder
from pixdiff.ldm.zimage import ZImageVelocity, build_zimage
from pixdiff.release import save_release, source_signature
from pixdiff.train.loop import OptimConfig


@dataclass
class LDMTrainConfig:
    preset: str = "small"
    size: int = 128
    caption_dropout: float = 0.1
    shift: float = 1.0
    max_tokens: int = 32
    pool: int = 0  # > 0: draw from this many scenes encoded once up front (seeded by pool_seed)
    pool_seed: int = 0


TRAIN_PRESETS = {
    "tiny": (LDMTrainConfig(preset="tiny", size=64), OptimConfig(steps=20, batch=4, lr=1e-3, warmup=5, log_every=5)),
    "small": (LDMTrainConfig(pool=20000), OptimConfig(steps=12000, batch=32, lr=3e-4, warmup=500)),
}


class LDMTask:
    def __init__(self, cfg: LDMTrainConfig, source, cache: Path | None = None, init=None, device="cpu"):
        self.device = torch.device(device)
        self.cfg, self.source = cfg, source.to(self.device)
        self.text = TextEncoder(cfg.max_tokens)
        self.captions = CaptionStates(self.text, cfg.caption_dropout, self.device)
        self.model = ZImageVelocity(build_zimage(cfg.preset, source.channels, self.text.dim))
        if init:
            self.init_from_release(init)
        self.model.to(self.device)
        self.pool_z, self.pool_captions = None, None
        if cfg.pool:
            self.pool_z, self.pool_captions = self.scene_pool(cache)

    def init_from_release(self, name_or_path) -> None:
        """Start from a released generator (e.g. to fine-tune ldm-shapes at another shift): same network, same latent
        source, same scene size."""
        from pixdiff.errors import InputError
        from pixdiff.ldm.generator import load_generator, stored_transformer_config
        from pixdiff.release import check_latent_source

        other = load_generator(name_or_path)
        same_net = stored_transformer_config(other.cfg.transformer) == stored_transformer_config(
            self.model.transformer.config)
        if other.pixel or not same_net or other.cfg.size != self.cfg.size:
            raise InputError(f"--init {name_or_path}: not a latent generator of this preset "
                             f"({self.cfg.preset}, {self.cfg.size}^2)")
        check_latent_source(asdict(other.cfg), self.source, other.name)
        self.model.load_state_dict(other.velocity.state_dict())

    def scene_pool(self, cache: Path | None) -> tuple[torch.Tensor, list[str]]:
        """The encoded scene pool, from `cache` when it holds this very pool (same scenes, size and source)."""
        key = {"n": self.cfg.pool, "seed": self.cfg.pool_seed, "size": self.cfg.size, "source": self.source.name}
        if cache is not None and cache.exists():
            try:
                saved = torch.load(cache, map_location="cpu", weights_only=True)
            except Exception:  # truncated by a kill mid-write, or not a pool at all: encode it again
                saved = {}
            if saved.get("key") == key:
                return saved["z"], saved["captions"]
        z, captions = self.encode_scenes(self.cfg.pool, np.random.default_rng(self.cfg.pool_seed))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"key": key, "z": z, "captions": captions}, cache)
        return z, captions

    @torch.no_grad()
    def encode_scenes(self, n: int, rng: np.random.Generator, chunk: int = 64) -> tuple[torch.Tensor, list[str]]:
        """n scenes -> (latents (n, C, h, w) in fp16, captions)."""
        from tqdm import tqdm

        zs, caps = [], []
        for i in tqdm(range(0, n, chunk), desc="encoding the scene pool", disable=n <= chunk, leave=False):
            images, captions = scene_batch(min(chunk, n - i), rng, self.cfg.size)
            zs.append(self.source.encode(images.to(self.device)).half().cpu())
            caps += captions
        return torch.cat(zs), caps

    @torch.no_grad()
    def batch(self, n: int, g: torch.Generator) -> dict:
        if self.pool_z is None:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
            z, prompts = self.encode_scenes(n, rng)
        else:
            idx = torch.randint(len(self.pool_z), (n,), generator=g)
            z, prompts = self.pool_z[idx], [self.pool_captions[i] for i in idx.tolist()]
        return {"z": z.float().to(self.device), "captions": self.captions(prompts, g)}

    def loss(self, model: ZImageVelocity, b: dict, g: torch.Generator):
        t = sample_t_logit_normal(len(b["z"]), generator=g, s=self.cfg.shift).to(self.device)
        loss = flow_matching_loss(lambda x, tt: model(x, tt, b["captions"]), b["z"], t, g).mean()
        return loss, {}

    def export(self, model: ZImageVelocity, out_dir: Path) -> None:
        cfg = GeneratorConfig(transformer=dict(model.transformer.config), latent_source=source_signature(self.source),
                              size=self.cfg.size, max_tokens=self.cfg.max_tokens, shift=self.cfg.shift)
        save_release(model.state_dict(), cfg.to_dict(), out_dir)
