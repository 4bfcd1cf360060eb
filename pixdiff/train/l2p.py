"""`pixdiff train l2p`: train an L2P pixel student (made by `pixdiff transfer`) on a synthetic set.

The objective and the shift are the source's (flow-matching velocity loss at logit-normal t), in pixel space (the
shift as the transfer set it, or --shift for a student trained on at another);
only the shallow blocks, the embedders and the Detailer Head train (the middle blocks stay frozen as the transfer
recorded); 10% of captions are dropped to the empty prompt for guidance. `--t-uniform P` draws a share P of t
uniformly instead (beyond the paper: the shifted logit-normal almost never trains the last, low-noise steps);
`--t-uniform-loss image` weights those draws' velocity loss by t^2, i.e. the clean-image error x - x_hat, so they
teach the low noise levels without outweighing the source's objective (velocity error = image error / t).
`--data shapes` trains on rendered scenes instead (real data: the ablation). A coupled-noise student
(`transfer --coupled-noise`) trains on each synthetic image paired with its source's starting noise (beyond the paper);
`--own-path P` then noises a share P of each batch along the student's own sampling path instead of the straight
line: a few no-grad Euler steps of the current student from the paired noise to t, with the same clean target, so it
learns to correct the drift its own steps make (exposure bias; beyond the paper).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pixdiff.data.shapes import scene_batch
from pixdiff.errors import InputError
from pixdiff.flow.loss import flow_matching_loss
from pixdiff.flow.schedule import sample_t_logit_normal_uniform
from pixdiff.flow.time import T_MIN, interpolate
from pixdiff.ldm.generator import load_generator
from pixdiff.ldm.text import CaptionStates
from pixdiff.release import save_release
from pixdiff.train.loop import OptimConfig


@dataclass
class L2PTrainConfig:
    caption_dropout: float = 0.1
    limit: int = 0  # use only the first `limit` images of the synthetic set (0: all)
    full_finetune: bool = False  # ablation: unfreeze the middle blocks too
    shift: float | None = None  # the training shift when not the student's own (recorded in its export)
    t_uniform: float = 0.0  # share of t drawn uniformly (low-noise coverage; 0: the source's logit-normal only)
    t_uniform_loss: str = "velocity"  # the uniform draws' loss: "velocity" (as the rest) or "image" (times t^2)
    own_path: float = 0.0  # coupled students: share of pairs noised along the student's own path (0: the straight line)
    own_path_steps: int = 4  # Euler steps of that path from t = 1 to t


TRAIN_PRESETS = {
    "tiny": (L2PTrainConfig(), OptimConfig(steps=20, batch=4, lr=1e-3, warmup=5, log_every=5)),
    "small": (L2PTrainConfig(), OptimConfig(steps=6000, batch=16, lr=2e-4, warmup=300)),
}


class L2PTask:
    def __init__(self, cfg: L2PTrainConfig, init: str | Path, data: str | Path, device="cpu"):
        student = load_generator(init)
        self.device = torch.device(device)
        if not student.pixel:
            raise InputError(f"{init} is not an L2P student (kind {student.cfg.kind!r}); make one with "
                             "`pixdiff transfer --source LDM --out DIR`")
        self.gcfg, self.cfg, self.model = student.cfg, cfg, student.velocity.to(self.device)
        if cfg.shift is not None:
            self.gcfg = replace(self.gcfg, shift=cfg.shift)
        if cfg.full_finetune:
            self.model.requires_grad_(True)
        self.captions = CaptionStates(student.text, cfg.caption_dropout, self.device)
        self.coupled = self.gcfg.noise == "coupled"
        if cfg.own_path and not self.coupled:
            raise InputError("--own-path follows the student's path from the noise paired with each image: it needs a "
                             "coupled-noise student (transfer --coupled-noise)")
        if str(data) == "shapes":
            if self.coupled:
                raise InputError("a coupled-noise student trains on (source noise, image) pairs: it needs a "
                                 "synthetic set, not --data shapes")
            self.data = None
        else:
            from pixdiff.transfer.synth import SynthSet
            self.data = SynthSet(data, cfg.limit or None, noise=self.coupled)
            self.data.images = self.data.images.to(self.device)  # a GPU holds the whole set (8,000 images: 1.6 GB)
            if self.coupled and self.data.noise.shape[1:] != student.latent_shape:
                raise InputError(f"{data} records starting noise of shape {tuple(self.data.noise.shape[1:])}; "
                                 f"this student's source draws {student.latent_shape}")
            if self.data.images.shape[-1] != self.gcfg.size:
                raise InputError(f"{data} holds {self.data.images.shape[-1]}px images; the student makes "
                                 f"{self.gcfg.size}px")

    @torch.no_grad()
    def batch(self, n: int, g: torch.Generator) -> dict:
        if self.data is None:
            rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=g)))
            x, prompts = scene_batch(n, rng, self.gcfg.size)
        else:
            x, prompts, eps_latent = self.data.sample(n, g)
        if not self.coupled:
            return {"x": x.to(self.device), "captions": self.captions(prompts, g)}
        # Coupled pairs: each image with the pixel noise the aligned embedding reads as the noise the source started
        # it from (reflow-style; the student can learn the source's noise -> image map). A dropped caption keeps
        # white noise: the unconditional branch stays an ordinary flow over all images.
        drop = torch.tensor(self.captions.dropped(n, g))
        eps = self.model.couple(eps_latent, torch.randn(x.shape, generator=g))
        eps[drop] = torch.randn(eps[drop].shape, generator=g)
        captions = self.captions.states(["" if d else p for p, d in zip(prompts, drop.tolist())])
        return {"x": x.to(self.device), "captions": captions, "eps": eps.to(self.device), "dropped": drop}

    def loss(self, model, b: dict, g: torch.Generator):
        # x-prediction divides by max(t, T_MIN): below T_MIN its velocity cannot match the target, so no draws there
        t_min = T_MIN if self.gcfg.prediction == "x" else 0.0
        t, uniform = sample_t_logit_normal_uniform(len(b["x"]), self.cfg.t_uniform, g, self.gcfg.shift, t_min,
                                                   return_uniform=True)
        t = t.to(self.device)
        if self.cfg.own_path:
            loss = self.own_path_loss(model, b, t, g)
        else:
            loss = flow_matching_loss(lambda x, tt: model(x, tt, b["captions"]), b["x"], t, g, b.get("eps"))
        if self.cfg.t_uniform_loss == "image":  # x_hat = x_t - t v_hat, so t^2 |v_hat - v|^2 = |x_hat - x|^2
            loss = torch.where(uniform.to(self.device), t.square() * loss, loss)
        return loss.mean(), {}

    def own_path_loss(self, model, b: dict, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The velocity loss with a share of the x_t taken from the student's own path: x_t (B, 3, H, W) reached by
        own_path_steps Euler steps of the model (no gradient) from the paired noise at t = 1. The target is the
        velocity that leads from that x_t to the clean image, (x_t - x) / t (on the straight line: eps - x)."""
        x, eps = b["x"], b["eps"]
        x_t = interpolate(x, eps, t)
        own = ((torch.rand(len(x), generator=g) < self.cfg.own_path) & ~b["dropped"]).to(self.device)
        if own.any():
            caps = [c for c, o in zip(b["captions"], own.tolist()) if o]
            z, t_own, steps = eps[own], t[own], self.cfg.own_path_steps
            with torch.no_grad():
                for j in range(steps):  # from t = 1 to t_own on an even grid, one step size per sample
                    t_j = 1 + (t_own - 1) * j / steps
                    z = z + ((t_own - 1) / steps).view(-1, 1, 1, 1) * model(z, t_j, caps).float()
            x_t[own] = z.to(x_t.dtype)
        target = (x_t - x) / t.view(-1, 1, 1, 1)
        return (model(x_t, t, b["captions"]).float() - target.float()).square().flatten(1).mean(1)

    def export(self, model, out_dir: Path) -> None:
        save_release(model.state_dict(), self.gcfg.for_new_weights().to_dict(), out_dir)
