"""`pixdiff train pid`: PiD teachers, and the cascade baselines trained by the same code.

A training pair: a high-quality crop HQ -> anti-aliased bicubic down by the scale (LQ) -> latent z = E(LQ) ->
with probability 0.75 the latent is noised to sigma ~ U[0, 0.8], z~ = (1 - sigma) z + sigma eps (so the decoder
learns to finish half-denoised latents) -> 10% of latents are dropped (unconditional). The loss is velocity MSE at
logit-normal t with the resolution-dependent shift, plus v1.5's auxiliary RGB loss on the adapter (the LQ image
predicted from the latent; YCbCr Charbonnier, weight (1 - sigma), skipped for dropped latents).

`condition="decoded"` trains on the source's decoded LQ image instead (the diffusion SR of a decode-then-SR
cascade), and `objective="l1"` trains a one-step regressor with the same network (the regression SR baseline).
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from pixdiff.data.crops import RandomCrops, step_generator
from pixdiff.data.images import downsample
from pixdiff.decoder import PiD, PiDConfig, save_decoder
from pixdiff.decoder.pid import SAMPLING_FIELDS
from pixdiff.errors import InputError
from pixdiff.flow.loss import velocity_loss
from pixdiff.flow.schedule import sample_t_logit_normal
from pixdiff.flow.time import interpolate, resolution_shift
from pixdiff.nn.pixel_dit import PRESETS as NET_PRESETS
from pixdiff.release import source_signature
from pixdiff.train.loop import OptimConfig


@dataclass
class PiDTrainConfig:
    net: str = "small"  # pixel DiT preset
    adapter_hidden: int = 128
    rgb_condition: bool = True  # the adapter's RGB estimate as a per-pixel input (the latent's direct path)
    condition: str = "latent"  # "latent": PiD; "decoded": the source's decoded image (cascade baselines)
    objective: str = "flow"  # "flow" or "l1" (one-step regression)
    prediction: str = "v"  # network output: "v" or "x0" (JiT-style x-prediction, still the velocity loss)
    residual: bool = False  # x0 = upsampled RGB estimate + network output (PiDConfig.residual)
    rgb_head: str = "linear"  # the adapter's LQ estimate: "linear" (v1.5), "decoder", "taef2" (TAEF2's decoder),
    # "decoder-sigma" / "taef2-sigma" (sigma-aware: a frozen decoder for clean latents), "identity" (decoded input)
    rgb_init: str | None = None  # the source whose decoder initialises the head: vae-f8c16 ("decoder"), taef2
    scale: int = 4
    crop: int = 256
    max_zoom: float = 4.0
    augment: bool = False  # rotations, flips, channel permutations, saturation (data.crops.augment): few photos
    noise_prob: float = 0.75  # share of latents noised to sigma ~ U[0, sigma_max]
    sigma_max: float = 0.8
    latent_dropout: float = 0.1
    aux_weight: float = 0.8
    shift: float = 2.0  # at 256^2: PiD's 6 sqrt(sqrt(HW) / 2048) gives 2.1 there
    text: bool = False  # caption conditioning from <image>.txt files next to the images (MiniLM, pooled)
    caption_dropout: float = 0.1
    head_only: bool = False  # train only the adapter's LQ estimate (the aux loss; the pixel DiT is not run): a new
    # latent source's decoder head learns at a small fraction of a teacher step's cost, then `--init` the teacher
    aux_luma: float = 0.25  # the aux loss's weight on Y: v1.5's 0.25 favours colour; the residual teacher builds
    # its output on this estimate, so the head-only stage weights brightness fully (1.0)


# The teacher: x0 output residual around the decoder head's LQ estimate, that head starting as vae-f8c16's decoder
# (for taef2 all but its input layers; `--lq-head taef2` / `taef2-sigma` give taef2 its own decoder instead). The
# baselines: the same network on the source's decoded image, residual around its bicubic upsampling. v1 / x0: the
# first designs (docs/benchmarks.md), a linear aux head, no residual.
SMALL = PiDTrainConfig(prediction="x0", residual=True, rgb_head="decoder", rgb_init="vae-f8c16")
CASCADE = PiDTrainConfig(condition="decoded", noise_prob=0.0, prediction="x0", residual=True, rgb_head="identity")
REGRESSION = replace(CASCADE, objective="l1", latent_dropout=0.0)
HEAD = replace(SMALL, head_only=True, latent_dropout=0.0, aux_luma=1.0)  # the teacher's LQ head alone
SMALL_OPT = OptimConfig(steps=8000, batch=8, lr=3e-4, warmup=300)
HEAD_OPT = OptimConfig(steps=4000, batch=16, lr=6e-4, warmup=100)
TINY_OPT = OptimConfig(steps=20, batch=2, lr=1e-3, warmup=5, log_every=5)


def _tiny(cfg: PiDTrainConfig) -> PiDTrainConfig:  # tests: seconds on CPU, any latent source
    return replace(cfg, net="tiny", adapter_hidden=16, crop=64, max_zoom=1.0, rgb_init=None)


TRAIN_PRESETS = {
    "small": (SMALL, SMALL_OPT),  # about 1 s per step on 2 idle CPU cores
    "small-text": (replace(SMALL, text=True), SMALL_OPT),
    "small-wide": (replace(SMALL, net="small-wide"), SMALL_OPT),  # experiment: pixel pathway 16 wide, 2 head blocks
    "small-cascade": (CASCADE, SMALL_OPT),
    "small-regression": (REGRESSION, SMALL_OPT),
    "small-head": (HEAD, HEAD_OPT),
    "small-v1": (PiDTrainConfig(), SMALL_OPT),
    "small-x0": (PiDTrainConfig(prediction="x0"), SMALL_OPT),
    "tiny": (_tiny(SMALL), TINY_OPT),
    "tiny-text": (_tiny(replace(SMALL, text=True)), TINY_OPT),
    "tiny-cascade": (_tiny(CASCADE), TINY_OPT),
    "tiny-regression": (_tiny(REGRESSION), TINY_OPT),
    "tiny-head": (_tiny(HEAD), TINY_OPT),
}


def ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [-1, 1] -> YCbCr (BT.601, [0, 1] scale, Cb / Cr centred at 0)."""
    r, g, b = ((x + 1) / 2).unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, 0.564 * (b - y), 0.713 * (r - y)], 1)


def aux_rgb_loss(pred: torch.Tensor, lq: torch.Tensor, weight: torch.Tensor, eps: float = 1e-3,
                 luma: float = 0.25) -> torch.Tensor:
    """PiD v1.5's colour loss: Charbonnier in YCbCr, Y weighted `luma` (0.25) and Cb / Cr 1.0; per-sample weight
    (B,)."""
    d = ycbcr(pred.float()) - ycbcr(lq.float())
    c = (d.square() + eps**2).sqrt() - eps  # (B, 3, h, w)
    per_sample = (c * torch.tensor([luma, 1.0, 1.0], device=c.device).view(1, 3, 1, 1)).flatten(1).mean(1)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1)


def conditioning_source(cfg: PiDTrainConfig, source):
    """What the network is conditioned on: the source's latents, or (cascade baselines) its decoded image."""
    if cfg.condition == "decoded":
        from pixdiff.latents.decoded import DecodedSource
        return DecodedSource(source)
    return source


def model_config(cfg: PiDTrainConfig, signature: dict) -> PiDConfig:
    """The PiD architecture a training configuration builds, for latents of `signature`."""
    from pixdiff.ldm.text import DIM, TextEncoder

    net = replace(NET_PRESETS[cfg.net], cond_channels=3 if cfg.rgb_condition else 0, text_dim=DIM if cfg.text else 0)
    return PiDConfig(net=net, latent_source=signature, scale=cfg.scale, adapter_hidden=cfg.adapter_hidden,
                     objective=cfg.objective, shift=cfg.shift, prediction=cfg.prediction, residual=cfg.residual,
                     rgb_head=cfg.rgb_head, text_encoder=TextEncoder.name if cfg.text else None)


def load_run(folder: Path, source_weights=None):
    """A decoder from a training run folder in progress: its EMA weights in state.pt (for comparing checkpoints
    with `pixdiff eval decode --decoder runs/...`)."""
    import json

    from pixdiff.decoder import PiDDecoder
    from pixdiff.latents import load_latent_source
    from pixdiff.train.checkpoint import load_state

    run = json.loads((folder / "config.json").read_text())
    if run.get("model") != "pid":
        raise InputError(f"{folder} is a training run of {run.get('model')!r}, not of a PiD decoder")
    cfg = PiDTrainConfig(**run["model_config"])
    source = conditioning_source(cfg, load_latent_source(run["source"], source_weights))
    state = load_state(folder)
    model = PiD(model_config(cfg, source_signature(source)))
    model.load_state_dict(state["ema"])
    return PiDDecoder(model, name=f"{folder.name}@{state['step']}")


def init_from_release(model: PiD, name_or_path) -> None:
    """Start a run from released PiD weights (e.g. a GPU run's export, continued on CPU). The architecture and the
    latent source must be the ones the run builds; latent_std is re-measured at export, and the release's sampling
    defaults (`pixdiff configure`) are not carried over: they were chosen for its weights."""
    from pixdiff.decoder import load_decoder

    other = load_decoder(name_or_path).model
    mine, theirs = asdict(model.cfg), asdict(other.cfg)
    ignored = {"latent_std", *SAMPLING_FIELDS}
    diff = sorted(k for k in mine if k not in ignored and mine[k] != theirs[k])
    if diff == ["rgb_head"]:  # a new LQ head (--lq-head): everything else from the release, of the head the tensors
        # whose name and shape match (taef2 -> taef2-sigma keeps the fine-tuned decoder), the rest as initialised
        mine_sd = model.state_dict()
        state = {k: v for k, v in other.state_dict().items()
                 if not k.startswith("adapter.aux.") or k in mine_sd and mine_sd[k].shape == v.shape}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.startswith("adapter.aux.") for k in missing)
        kept = sum(k.startswith("adapter.aux.") for k in state)
        print(f"--init {name_or_path}: all but its LQ head ({theirs['rgb_head']}; {kept} of its tensors match the "
              f"{mine['rgb_head']} head's), the rest of the new head as initialised", file=sys.stderr)
    elif diff:
        raise InputError(f"--init {name_or_path}: its architecture differs from this preset's in {', '.join(diff)}")
    else:
        model.load_state_dict(other.state_dict())


class PiDTask:
    def __init__(self, cfg: PiDTrainConfig, source, data_folders, device="cpu", init=None):
        self.device = torch.device(device)
        self.cfg, self.source = cfg, conditioning_source(cfg, source).to(self.device)
        self.text = None
        if cfg.text:
            from pixdiff.ldm.text import TextEncoder
            self.text = TextEncoder()
        if cfg.head_only and (cfg.rgb_head == "identity" or cfg.condition != "latent"):
            raise InputError("head_only trains the adapter's LQ estimate from latents: it needs a learned rgb_head "
                             "(linear, decoder, decoder-sigma, taef2 or taef2-sigma) and condition 'latent'")
        self.model = PiD(model_config(cfg, source_signature(self.source)))
        if cfg.rgb_init == "taef2":  # (a resumed run then loads its own weights over these)
            from pixdiff.nn.lq_decoder import init_from_taef2
            init_from_taef2(self.model.adapter.aux, self.source)
        elif cfg.rgb_init:
            from pixdiff.latents import load_latent_source
            from pixdiff.nn.lq_decoder import init_from_vae
            init_from_vae(self.model.adapter.aux, load_latent_source(cfg.rgb_init))
        if init:
            init_from_release(self.model, init)
        self.model.to(self.device)
        self.data = RandomCrops(data_folders, cfg.crop, cfg.max_zoom, cfg.augment)
        if self.text:
            self.captions = [p.with_suffix(".txt").read_text().strip() if p.with_suffix(".txt").exists() else ""
                             for p in self.data.paths]
            if not any(self.captions):
                raise InputError(f"text conditioning needs captions: no <image>.txt next to the {len(self.captions)} "
                                 "training images")
            keys = sorted(set(self.captions) | {""})
            self._pooled = dict(zip(keys, self.text.pooled(keys)))  # caption -> (text_dim,)

    @torch.no_grad()
    def batch(self, n: int, g: torch.Generator) -> dict:
        """Random numbers come from the CPU generator g and then move, so CPU and CUDA runs draw the same ones."""
        dev = self.device
        hq, which = self.data.sample(n, g, with_index=True, device=dev)  # (B, 3, H, W) in [-1, 1]
        lq = downsample(hq, self.cfg.scale)  # (B, 3, H/s, W/s)
        z = self.source.encode(lq).float()  # (B, C, h, w)
        noisy = torch.rand(n, generator=g) < self.cfg.noise_prob
        sigma = (torch.rand(n, generator=g) * self.cfg.sigma_max * noisy).to(dev)
        z = interpolate(z, torch.randn(z.shape, generator=g).to(dev), sigma)
        keep = (torch.rand(n, generator=g) >= self.cfg.latent_dropout).to(dev)
        b = {"hq": hq, "lq": lq, "z": z, "sigma": sigma, "keep": keep, "text": None}
        if self.text:  # caption dropout: the empty prompt
            drop = (torch.rand(n, generator=g) < self.cfg.caption_dropout).tolist()
            b["text"] = torch.stack([self._pooled["" if d else self.captions[i]] for i, d in zip(which, drop)]).to(dev)
        return b

    def loss(self, model: PiD, b: dict, g: torch.Generator):
        hq, z, sigma, keep = b["hq"], b["z"], b["sigma"], b["keep"]
        if self.cfg.head_only:  # the LQ estimate alone; parameters without a gradient are left as they are
            aux = aux_rgb_loss(model.latent_branch(z, sigma)[1], b["lq"], 1 - sigma, luma=self.cfg.aux_luma)
            return aux, {"aux_rgb": aux.detach()}
        branch = model.latent_branch(z, sigma)  # (trunk map, LQ estimate)
        if self.cfg.objective == "l1":
            main = (model.regress(z, sigma, branch=branch, text=b["text"]).float() - hq).abs().mean()
        else:
            s = resolution_shift(hq.shape[-2] * hq.shape[-1], base_shift=self.cfg.shift)
            t = sample_t_logit_normal(hq.shape[0], generator=g, s=s).to(hq.device)
            eps = torch.randn(hq.shape, generator=g).to(hq.device)
            v = model(interpolate(hq, eps, t), t, z, sigma, keep, branch=branch, text=b["text"])
            main = velocity_loss(v, hq, eps).mean()
        stats = {"main": main.detach()}
        loss = main
        if branch[1] is not None and self.cfg.rgb_head != "identity" and self.cfg.aux_weight > 0:
            aux = aux_rgb_loss(branch[1], b["lq"], (1 - sigma) * keep, luma=self.cfg.aux_luma)
            loss = loss + self.cfg.aux_weight * aux
            stats["aux_rgb"] = aux.detach()
        return loss, stats

    @torch.no_grad()
    def export(self, model: PiD, out_dir: Path) -> None:
        """fp16 release folder; records the std of clean training latents (the decoder's wrong-space guard)."""
        lq = downsample(self.data.sample(16, step_generator(12345, 0), device=self.device), self.cfg.scale)
        z = self.source.encode(lq).float()
        model.cfg = replace(model.cfg, latent_std=round(float(z.std()), 4))
        save_decoder(model.float().eval().cpu(), out_dir)
