"""PiD: the pixel DiT plus its sigma-aware latent adapter, as one module (`PiD`), and the user-facing decoder
(`PiDDecoder`: latents -> images at `scale` times the source's resolution, by sampling the flow ODE).

The same module also serves the cascade baselines of `pixdiff eval decode`: conditioned on the source's decoded
image instead of its latent (a latent source of factor 1, see `DecodedSource`), it is the diffusion
super-resolution model (c); with `objective="l1"` it is the one-step regression super-resolution net (b).
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pixdiff.errors import InputError
from pixdiff.flow.guidance import classifier_free_guidance
from pixdiff.flow.samplers import get_sampler
from pixdiff.flow.schedule import timesteps
from pixdiff.flow.time import resolution_shift, velocity_from_x0
from pixdiff.nn.latent_adapter import LatentAdapter
from pixdiff.nn.pixel_dit import PixelDiT, PixelDiTConfig

KIND = "pid-decoder"
# measured: 12 Euler steps beat 25 on PSNR, LQ PSNR and Frechet at 256^2 and 512^2 (docs/benchmarks.md)
DEFAULT_STEPS = 12
SAMPLING_FIELDS = ("temperature", "latent_guidance")  # a release's sampling defaults (`pixdiff configure`)
DEFAULT_BACK_PROJECTION = 1  # one round: +0.9-1.7 dB LQ PSNR and PSNR for a little detail (docs/benchmarks.md)


@dataclass
class PiDConfig:
    net: PixelDiTConfig = field(default_factory=PixelDiTConfig)
    latent_source: dict = field(default_factory=lambda: {"name": "vae-f8c16", "channels": 16, "factor": 8})
    scale: int = 4  # output pixels per input (low-resolution) pixel
    adapter_hidden: int = 128
    adapter_blocks: int = 2
    aux_rgb: bool = True  # v1.5's low-resolution RGB head (a training loss)
    rgb_head: str = "linear"  # "linear": v1.5's per-token head; "decoder": a VAE-decoder-shaped net; "taef2": TAEF2's
    # own decoder, trainable; "decoder-sigma" / "taef2-sigma": that for noisy latents, the source's decoder as it is
    # for clean ones (all in nn/lq_decoder); "identity": the input is the decoded LQ image (cascades)
    objective: str = "flow"  # "flow": the PiD teacher; "l1": one-step regression (baseline b)
    prediction: str = "v"  # what the network outputs: "v" (velocity) or "x0" (the clean image, JiT); the model
    # always returns a velocity, v = (x_t - x0) / t with t >= flow.time.T_MIN in the division
    residual: bool = False  # x0 = the upsampled RGB condition + the network's output (needs x0 and cond_channels 3):
    # with a zero output layer the untrained model decodes to the adapter's estimate, and training learns the detail
    shift: float = 2.0  # time shift at 256^2 output, growing with the side length (resolution_shift)
    latent_std: float = 1.0  # measured on training latents: a guard against latents of another space
    text_encoder: str | None = None  # optional caption conditioning (net.text_dim > 0): "all-MiniLM-L6-v2"
    # SAMPLING_FIELDS: this release's defaults for decode's None, set with `pixdiff configure` (training photos)
    temperature: float = 1.0
    latent_guidance: float = 1.0

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": KIND}

    @classmethod
    def from_dict(cls, d: dict) -> "PiDConfig":
        d = {k: v for k, v in d.items() if k != "kind"}
        return cls(**{**d, "net": PixelDiTConfig(**d["net"])})


class PiD(nn.Module):
    def __init__(self, cfg: PiDConfig):
        super().__init__()
        self.cfg = cfg
        self.net = PixelDiT(cfg.net)
        src = cfg.latent_source
        if cfg.prediction not in ("v", "x0"):
            raise ValueError(f"prediction must be 'v' or 'x0', got {cfg.prediction!r}")
        if cfg.net.cond_channels not in (0, 3) or cfg.net.cond_channels and not cfg.aux_rgb:
            raise ValueError("the per-pixel condition of PiD is the adapter's RGB estimate: cond_channels 3, aux_rgb")
        if cfg.residual and (cfg.prediction != "x0" or not cfg.net.cond_channels):
            raise ValueError("residual adds the network's x0 to the RGB condition: it needs prediction 'x0' and "
                             "cond_channels 3")
        self.adapter = LatentAdapter(src["channels"], src["factor"], cfg.scale, cfg.net.patch, cfg.net.dim,
                                     n_inject=len(self.net.injection_points) + 1, hidden=cfg.adapter_hidden,
                                     n_blocks=cfg.adapter_blocks, aux_rgb=cfg.aux_rgb, rgb_head=cfg.rgb_head)

    def latent_branch(self, latents: torch.Tensor, sigma: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the latent path computes independently of t (once per decode): the trunk map (B, hidden, gh, gw) and
        the low-resolution RGB estimate (B, 3, h f, w f), or None without an aux head. sigma (B,): the latents'
        noise level, for the sigma-aware heads ("decoder-sigma", "taef2-sigma"; None: clean latents)."""
        trunk = self.adapter.trunk_map(latents)
        return trunk, self.adapter.aux_rgb(latents, trunk, sigma) if self.adapter.aux is not None else None

    def forward(self, x: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, sigma: torch.Tensor,
                keep: torch.Tensor | None = None, branch: tuple | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) noisy image at time t (B,); latents (B, C, h, w) at noise level sigma (B,), with
        H = h * factor * scale. keep (B,) bool: False drops the latent (latent dropout; unconditional).
        branch: latent_branch(latents), when already computed. text: (B, text_dim) pooled caption embedding, for
        models trained with captions. Returns the velocity (B, 3, H, W)."""
        trunk, lq = self.latent_branch(latents, sigma) if branch is None else branch
        feats = self.adapter.features(trunk=trunk)  # each (B, N, D)
        if keep is not None:
            feats = [f * keep.view(-1, 1, 1).to(f.dtype) for f in feats]
        cond = self.rgb_condition(lq, sigma, keep, x.shape[-2:])  # (B, 3, H, W) or None
        out = self.net(x, t, self.adapter, feats, sigma, cond=cond, text=text)
        if self.cfg.residual:
            out = out + cond.to(out.dtype)
        if self.cfg.prediction == "x0":  # JiT: clean images are easier for a patch bottleneck than noise
            return velocity_from_x0(x, t.to(out.dtype), out)
        return out

    def rgb_condition(self, lq, sigma, keep, size) -> torch.Tensor | None:
        """The latent's direct path to every pixel (net.cond_channels = 3): the adapter's low-resolution RGB estimate
        lq, upsampled (bicubic) to (B, 3, H, W), faded as the latent's noise grows (the adapter's initial gate curve,
        sigmoid(2 - 5 sigma) / sigmoid(2)) and zeroed for dropped latents."""
        if not self.cfg.net.cond_channels:
            return None
        rgb = F.interpolate(lq, size=tuple(size), mode="bicubic", align_corners=False)
        w = torch.sigmoid(2 - 5 * sigma) / torch.sigmoid(torch.tensor(2.0))
        if keep is not None:
            w = w * keep
        return rgb * w.view(-1, 1, 1, 1).to(rgb.dtype)

    def regress(self, latents: torch.Tensor, sigma: torch.Tensor, branch: tuple | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """The one-step output of an `l1` model: x0 = x_t - t v at x_t = 0 (the noise mean), t = 1."""
        b, _, h, w = latents.shape
        f = self.cfg.latent_source["factor"] * self.cfg.scale
        x = torch.zeros(b, 3, h * f, w * f, dtype=latents.dtype, device=latents.device)
        return -self(x, torch.ones(b, device=latents.device), latents, sigma, branch=branch, text=text)


def project(x: torch.Tensor, lq: torch.Tensor, scale: int, rounds: int) -> torch.Tensor:
    """Iterative back-projection (Irani and Peleg, 1991): x (B, 3, H, W) <- x + up(lq - down(x)), `rounds` times, so
    that x downsampled by `scale` approaches lq (B, 3, H/scale, W/scale). The correction is a bicubic upsampling of a
    low-resolution residual: it moves the low frequencies towards lq and leaves the sampled detail as it is."""
    from pixdiff.data.images import downsample

    for _ in range(rounds):
        x = x + F.interpolate(lq - downsample(x, scale), scale_factor=scale, mode="bicubic", align_corners=False)
    return x


class PiDDecoder:
    """Latents -> images. `decode(latents, sigma=0, steps=12)`; seeded through `generator`."""

    def __init__(self, model: PiD, name: str = "pid"):
        self.model = model.eval()
        self.cfg = model.cfg
        self.name = name

    @property
    def source(self) -> dict:
        return self.cfg.latent_source

    def to(self, device) -> "PiDDecoder":
        """Run the network on `device`; latents passed to `decode` are moved there, and images come back there."""
        self.model.to(device)
        return self

    def check(self, latents: torch.Tensor, sigma: torch.Tensor, scale: int | None) -> None:
        from pixdiff.latents.base import check_latents

        src = self.source
        if scale is not None and scale != self.cfg.scale:
            raise InputError(f"{self.name} decodes at {self.cfg.scale}x only; scale {scale} is not supported by this "
                             "checkpoint (train another for it)")
        check_latents(latents, src["channels"], src["name"])
        if bool(((sigma < 0) | (sigma > 1)).any()):
            raise InputError(f"sigma must be in [0, 1], got {sigma.tolist()}")
        # Clean latents of the right space have std near latent_std; noised ones move towards 1.
        std = float(latents.float().std())
        lo, hi = min(self.cfg.latent_std, 1.0) / 3, max(self.cfg.latent_std, 1.0) * 3
        if not lo <= std <= hi:
            raise InputError(f"latents have std {std:.3g}, but {src['name']} latents have std about "
                             f"{self.cfg.latent_std:.3g}: they look like another latent space (or an unnormalised "
                             "one); encode with the source this decoder was trained on")

    def back_projection_rounds(self, rounds: int | None) -> int:
        """The rounds of back-projection `decode` runs: `rounds`, or by default DEFAULT_BACK_PROJECTION when this
        decoder has an LQ estimate (0 without one)."""
        has_estimate = self.model.adapter.aux is not None
        if rounds is None:
            return DEFAULT_BACK_PROJECTION if has_estimate else 0
        if rounds < 0:
            raise InputError(f"back_projection must be >= 0 rounds, got {rounds}")
        if rounds and not has_estimate:
            raise InputError(f"{self.name} has no LQ estimate to back-project onto (trained without aux_rgb)")
        return rounds

    def sampling(self, temperature: float | None = None, latent_guidance: float | None = None,
                 text_guidance: bool = False) -> tuple[float, float]:
        """(temperature, latent_guidance) that `decode` uses: the arguments, or this release's defaults. With text
        guidance the latent guidance defaults to 1 (off): one guidance at a time."""
        temperature = self.cfg.temperature if temperature is None else temperature
        if latent_guidance is None:
            latent_guidance = 1.0 if text_guidance else self.cfg.latent_guidance
        if not 0 < temperature <= 1.5:
            raise InputError(f"temperature must be in (0, 1.5], got {temperature}")
        if not 0 <= latent_guidance <= 10:
            raise InputError(f"latent guidance must be in [0, 10], got {latent_guidance}")
        return float(temperature), float(latent_guidance)

    def text_states(self, prompt, n: int, device=None) -> torch.Tensor | None:
        """Pooled caption embeddings (n, text_dim) for a prompt (or n prompts); None for models without text."""
        if not self.cfg.text_encoder:
            if prompt:
                raise InputError(f"{self.name} was trained without captions: it takes no prompt")
            return None
        from pixdiff.ldm.text import TextEncoder

        prompts = [prompt or ""] * n if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise InputError(f"{len(prompts)} prompts for {n} latents")
        return TextEncoder().pooled(prompts).to(device)  # the text encoder runs on the CPU

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, sigma: float | torch.Tensor = 0.0, steps: int | None = None,
               sampler: str = "euler", scale: int | None = None, generator: torch.Generator | None = None,
               progress: bool = False, prompt: str | list[str] | None = None, guidance: float = 1.0,
               temperature: float | None = None, latent_guidance: float | None = None,
               back_projection: int | None = None) -> torch.Tensor:
        """(B, C, h, w) latents at noise level sigma -> images (B, 3, h f s, w f s) in [-1, 1].
        steps: sampler steps (default DEFAULT_STEPS, 12); scale: checked against the checkpoint's (None: its own).
        prompt / guidance: for decoders trained with captions; guidance is text-only (the latent conditions both
        branches, as in PiD). temperature: scale of the starting noise; below 1 the sampler invents less detail
        (the usual trade of detail energy against fidelity). latent_guidance: classifier-free guidance against the
        model with the latent dropped (trained with latent dropout); > 1 doubles the network calls per step. Both
        default to the release's own (`sampling`; 1 unless `pixdiff configure` set them).
        back_projection: rounds of iterative back-projection of the output onto the adapter's LQ estimate (`project`;
        default DEFAULT_BACK_PROJECTION when the decoder has one); 0 leaves the sample as it is."""
        steps = steps or DEFAULT_STEPS
        text_guidance = prompt is not None and guidance != 1
        temperature, latent_guidance = self.sampling(temperature, latent_guidance, text_guidance)
        back_projection = self.back_projection_rounds(back_projection)
        b = latents.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32).flatten().expand(b)  # (B,)
        self.check(latents, sigma, scale)
        dev = next(self.model.parameters()).device
        sigma = sigma.to(dev)
        z, (h, w) = self._pad(latents.float().to(dev))
        f = self.source["factor"] * self.cfg.scale
        branch = self.model.latent_branch(z, sigma)  # it does not depend on t: run it once
        text = self.text_states(prompt, b, dev)
        if latent_guidance != 1 and guidance != 1 and text is not None:
            raise InputError("use text guidance or latent guidance, not both at once")
        if self.cfg.objective == "l1":
            x = self.model.regress(z, sigma, branch=branch, text=text)
        else:
            shape = (b, 3, z.shape[-2] * f, z.shape[-1] * f)
            x = torch.randn(shape, generator=generator).to(z.device) * temperature
            grid = timesteps(steps, resolution_shift(shape[-2] * shape[-1], base_shift=self.cfg.shift))
            bar = tqdm(total=steps, disable=not progress, desc=f"{self.name} decode", leave=False)

            def net(x_t, t, c):  # c = (keep (B',) bool, text or None); the latent's noise level conditions all
                keep, txt = c
                k = len(x_t) // b
                if k == 1:  # no guidance: the batch as it is, without copies at every step
                    return self.model(x_t, t, z, sigma, keep, branch=branch, text=txt)
                rep = tuple(None if a is None else a.repeat(k, 1, 1, 1) for a in branch)
                return self.model(x_t, t, z.repeat(k, 1, 1, 1), sigma.repeat(k), keep, branch=rep, text=txt)

            on = torch.ones(b, dtype=torch.bool, device=z.device)
            if text is not None and guidance != 1:  # text-only guidance, as in PiD
                uncond, gw = (on, self.text_states("", b, dev)), guidance
            else:  # latent guidance: against the latent-dropped (unconditional) branch
                uncond, gw = (~on, text), latent_guidance
            velocity = classifier_free_guidance(net, (on, text), uncond, gw, cat=lambda p, q: (
                torch.cat([p[0], q[0]]), None if p[1] is None else torch.cat([p[1], q[1]])))

            x = get_sampler(sampler)(velocity, x, grid, generator=generator, callback=lambda *_: bar.update(1))
            bar.close()
        if back_projection:
            x = project(x, branch[1].float(), self.cfg.scale, back_projection)
        return x[..., : h * f, : w * f].clamp(-1, 1)

    def _pad(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Replicate-pad the latent grid so the output is a whole number of patches (and of folded cells)."""
        h, w = z.shape[-2:]
        f = self.source["factor"] * self.cfg.scale
        p = self.cfg.net.patch
        step = max(p // f, 1)  # latent cells per patch side (1 when a cell spans whole patches)
        ph, pw = -h % step, -w % step
        if ph or pw:
            warnings.warn(f"latent grid {w}x{h} padded to {w + pw}x{h + ph} (a whole number of {p}-pixel patches); "
                          "the output is cropped back", stacklevel=3)
            z = F.pad(z, (0, pw, 0, ph), mode="replicate")
        return z, (h, w)
