"""Text-to-image generators: sample with the flow ODE and classifier-free guidance.

kind "ldm": the latent generator; its latents are decoded by the latent source's own decoder or by PiD (optionally
handing PiD a half-denoised latent: `stop_at`). kind "l2p": an L2P pixel student, which samples pixels directly.

A release folder holds config.json (kind, the transformer's diffusers config, the latent source, the image size,
the text encoder, the shift and the sampling defaults; for l2p also the family, head and frozen blocks) and
model.safetensors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from pixdiff.errors import InputError
from pixdiff.flow.guidance import classifier_free_guidance
from pixdiff.flow.schedule import timesteps
from pixdiff.flow.time import x0_from_velocity
from pixdiff.ldm.zimage import ZImageVelocity

KINDS = ("ldm", "l2p")
SAMPLING_LIMITS = {"shift": (lambda v: v > 0, "> 0"), "steps": (lambda v: v >= 1, ">= 1"),
                   "cfg": (lambda v: v >= 1, ">= 1"), "eta": (lambda v: 0 <= v <= 1, "in [0, 1]")}


def check_sampling(**settings) -> None:
    """An InputError naming the flag of the first setting out of its range (None: not given)."""
    for k, v in settings.items():
        ok, rule = SAMPLING_LIMITS[k]
        if v is not None and not ok(v):
            raise InputError(f"--{k} must be {rule}, got {v}")


@dataclass
class GeneratorConfig:
    kind: str = "ldm"
    transformer: dict = field(default_factory=dict)  # the diffusers config of its transformer
    latent_source: dict = field(default_factory=lambda: {"name": "vae-f8c16", "channels": 16, "factor": 8})
    size: int = 128  # image side in pixels
    text_encoder: str = "all-MiniLM-L6-v2"
    max_tokens: int = 32
    shift: float = 1.0  # training shift, and sampling shift unless sample_shift is set
    sample_shift: float | None = None  # a sampling shift of its own, set by `pixdiff configure --shift`
    steps: int = 30
    cfg: float = 4.0
    eta: float = 0.0  # stochastic sampling: DDIM's eta (0: the Euler ODE, 1: ancestral; Generator.sample_latents)
    family: str = "ZImageTransformer2DModel"  # l2p: the transformer's class
    head: str = "detailer"  # l2p: "detailer" or "linear" (ablation)
    head_channels: list = field(default_factory=list)  # l2p: Detailer Head
    n_train: int = 0  # l2p: shallow blocks trained at each end
    prediction: str = "v"  # l2p: what the head outputs, "v" (velocity, L2P), "x" (clean image, JiT) or "edm"
    noise: str = "pixel"  # l2p: "pixel" (white) or "coupled" (drawn from the source's latent noise, PixelStudent.couple)

    def sampling(self, steps: int | None = None, cfg: float | None = None) -> dict:
        """The settings a sampling call uses: the arguments given, else this release's defaults."""
        return {"steps": steps or self.steps, "cfg": self.cfg if cfg is None else cfg,
                "shift": self.sample_shift or self.shift, "eta": self.eta}

    def for_new_weights(self, **changes) -> GeneratorConfig:
        """This config for other weights (a transfer, a grown or trained student): a sampling shift chosen for these
        weights does not carry over."""
        return replace(self, sample_shift=None, **changes)

    def to_dict(self) -> dict:
        d = {**asdict(self), "transformer": stored_transformer_config(self.transformer)}
        if d["sample_shift"] is None:  # unset: releases (and sample-cache keys) stay as they were before the field
            del d["sample_shift"]
        for k, default in (("noise", "pixel"), ("eta", 0.0)):  # likewise
            if d[k] == default:
                del d[k]
        return d


def stored_transformer_config(config) -> dict:
    """A diffusers transformer config as config.json stores it: lists for tuples, and without diffusers' private
    bookkeeping (_use_default_values is a set, listed in hash order, so two writes of the same model would differ
    byte for byte; from_config does not need it)."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


class Generator:
    def __init__(self, velocity, cfg: GeneratorConfig, name: str = "ldm", folder: Path | None = None):
        from pixdiff.ldm.text import TextEncoder

        self.velocity, self.cfg, self.name, self.folder = velocity.eval(), cfg, name, folder
        self.text = TextEncoder(cfg.max_tokens)
        self._source = None

    @property
    def source(self):
        if self._source is None:
            from pixdiff.latents import load_latent_source
            self._source = load_latent_source(self.cfg.latent_source["name"]).to(self.device)
        return self._source

    @property
    def device(self) -> torch.device:
        return next(self.velocity.parameters()).device

    def to(self, device) -> "Generator":
        """Run the network (and the latent decoder) on `device`; the text encoder stays on the CPU, and samples come
        back on the CPU with the same noise as a CPU run (drawn from CPU generators)."""
        self.velocity.to(device)
        if self._source is not None:
            self._source.to(device)
        return self

    @property
    def pixel(self) -> bool:
        return self.cfg.kind == "l2p"

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one sample's starting noise: pixels for l2p, latents otherwise."""
        return (3, self.cfg.size, self.cfg.size) if self.pixel else self.latent_shape

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of a latent of this generator's image size."""
        src = self.cfg.latent_source
        return src["channels"], self.cfg.size // src["factor"], self.cfg.size // src["factor"]

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The starting noise of n samples, (n, C, h, w), drawn on the CPU (the same on any device). A coupled-noise
        student draws its source's latent noise first (the same numbers the source draws from the same generator),
        then white pixel noise, and couples them: seed for seed it starts where its source starts."""
        if self.cfg.noise == "coupled":
            eps_latent = torch.randn(n, *self.latent_shape, generator=generator)
            return self.velocity.couple(eps_latent, torch.randn(n, *self.noise_shape, generator=generator))
        return torch.randn(n, *self.noise_shape, generator=generator)

    @torch.no_grad()
    def sample_latents(self, prompts: list[str], steps: int | None = None, cfg: float | None = None,
                       generator: torch.Generator | None = None, stop_at: int | None = None,
                       progress: bool = False, callback=None, noise: torch.Tensor | None = None,
                       step_noise=None) -> tuple[torch.Tensor, float]:
        """Samples (B, C, h, w) (images for l2p) and their noise level: 0 after all steps, t_K after K = stop_at.
        noise: the starting noise (default: `self.noise(B, generator)`). callback(i, t, x0) sees each step's guided
        prediction of the clean sample, made at noise level t.

        With the config's eta > 0 the sampler is stochastic, DDIM's eta in flow form: each step splits x_t into its
        predicted clean sample x0 = x_t - t v and noise eps = x_t + (1 - t) v, and goes to the next level s as
        (1 - s) x0 + sqrt(s^2 - c^2) eps + c * fresh noise, c = eta * the std of the DDPM posterior q(x_s | x_t, x0):
        0 is exactly the Euler step, 1 ancestral (DDPM) sampling. The fresh noise comes from step_noise() (default:
        `self.noise(B, generator)`, so a coupled student's is coupled too)."""
        steps, cfg, shift, eta = self.cfg.sampling(steps, cfg).values()
        if stop_at is not None and not 0 < stop_at <= steps:
            raise InputError(f"--stop-at must be between 1 and the number of steps ({steps}), got {stop_at}")
        n, dev = len(prompts), self.device
        if noise is None:
            noise = self.noise(n, generator)
        elif tuple(noise.shape) != (n, *self.noise_shape):
            raise InputError(f"noise of shape {tuple(noise.shape)} for {n} samples of {self.name}: expected "
                             f"{(n, *self.noise_shape)}")
        cond = [s.to(dev) for s in self.text.encode(prompts)]
        uncond = [s.to(dev) for s in self.text.encode([""])] * n
        x = noise.to(dev)
        grid = timesteps(steps, shift)[: (stop_at or steps) + 1].to(dev)

        v = classifier_free_guidance(self.velocity, cond, uncond, cfg, cat=lambda a, b: a + b)  # caption lists
        fresh = step_noise or (lambda: self.noise(n, generator))

        bar = tqdm(total=len(grid) - 1, disable=not progress, desc=f"{self.name}", leave=False)
        for i, (t, t_next) in enumerate(zip(grid[:-1], grid[1:])):
            vt = v(x, t.expand(n))
            if callback:
                callback(i, float(t), x0_from_velocity(x, t, vt).cpu())
            if eta and t_next > 0:  # DDIM's step in flow form (x_t = (1 - t) x0 + t eps), c = eta * the DDPM step's std
                x0, eps = x - t * vt, x + (1 - t) * vt
                c = eta * t_next / t * (t**2 - ((1 - t) / (1 - t_next) * t_next) ** 2).sqrt()
                x = (1 - t_next) * x0 + (t_next**2 - c**2).sqrt() * eps + c * fresh().to(dev)
            else:
                x = x + (t_next - t) * vt  # Euler
            bar.update(1)
        bar.close()
        return x.cpu(), float(grid[-1])

    @torch.no_grad()
    def generate(self, prompts: list[str], steps: int | None = None, cfg: float | None = None,
                 generator: torch.Generator | None = None, decoder=None, stop_at: int | None = None,
                 decoder_steps: int | None = None, progress: bool = False,
                 noise: torch.Tensor | None = None, step_noise=None) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1]: decoded by the latent source, or by a PiD `decoder` (which then also
        receives half-denoised latents with their noise level when stop_at is given)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if self.pixel:
            if decoder is not None or stop_at is not None:
                raise InputError(f"{self.name} generates pixels directly: it takes no decoder and no --stop-at")
            return self.sample_latents(prompts, steps, cfg, generator, None, progress, noise=noise,
                                       step_noise=step_noise)[0].clamp(-1, 1)
        if stop_at is not None and decoder is None:
            raise InputError("--stop-at hands a half-denoised latent to PiD: it needs --decoder pid-...")
        if decoder is not None and decoder.source["name"] != self.cfg.latent_source["name"]:
            raise InputError(f"{decoder.name} decodes {decoder.source['name']!r} latents, but {self.name} generates "
                             f"{self.cfg.latent_source['name']!r} latents")
        z, sigma = self.sample_latents(prompts, steps, cfg, generator, stop_at, progress, noise=noise,
                                       step_noise=step_noise)
        if decoder is None:
            return self.source.decode(z.to(self.device)).clamp(-1, 1).cpu()
        return decoder.decode(z, sigma=sigma, steps=decoder_steps, generator=generator).cpu()


def build_network(cfg: GeneratorConfig):
    """The (untrained) network a generator config describes."""
    if cfg.kind == "l2p":
        from pixdiff.transfer.families import FAMILIES
        from pixdiff.transfer.student import build_student
        if cfg.noise not in ("pixel", "coupled"):
            raise InputError(f"unknown noise {cfg.noise!r}: pixel or coupled")
        map_shape = None
        if cfg.noise == "coupled" and cfg.family in FAMILIES:
            patch = FAMILIES[cfg.family].latent_patch(cfg.transformer)  # the student's pixel patch
            lp = patch // cfg.latent_source["factor"]
            map_shape = (cfg.latent_source["channels"] * lp * lp, 3 * patch * patch)
        return build_student(cfg.family, cfg.transformer, cfg.head_channels, cfg.n_train, cfg.head, cfg.prediction,
                             map_shape)
    from diffusers import ZImageTransformer2DModel
    return ZImageVelocity(ZImageTransformer2DModel.from_config(cfg.transformer))


def load_generator(name_or_path: str | Path) -> Generator:
    """A generator by shipped name (ldm-shapes, l2p-shapes) or release folder."""
    from pixdiff.latents.registry import shipped
    from pixdiff.release import display_name, load_release

    folder = shipped(str(name_or_path)) or Path(name_or_path)
    if not folder.exists():
        raise InputError(f"no generator {str(name_or_path)!r}: not a shipped name and not a folder")
    config, state = load_release(folder)
    if config.get("kind") not in KINDS:
        raise InputError(f"{folder} holds a {config.get('kind', 'unknown kind of')} model, not a generator "
                         f"({' or '.join(KINDS)})")
    try:
        cfg = GeneratorConfig(**config)
        net = build_network(cfg)
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except (TypeError, KeyError, RuntimeError, ValueError) as e:
        raise InputError(f"{folder}: the weights do not match their config.json ({str(e).splitlines()[0]})") from None
    return Generator(net, cfg, name=display_name(folder), folder=folder)
