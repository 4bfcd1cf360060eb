"""diffusers autoencoders as latent sources: AutoencoderKL (SD, SDXL, SD3, FLUX.1, pixdiff's vae-f8c16) and
AutoencoderKLFlux2 (FLUX.2).

The normalisation comes from the model's own config, exactly as the diffusers pipelines apply it:
  AutoencoderKL:       z = (mode(E(x)) - shift_factor) * scaling_factor        (SD/SDXL: shift_factor None -> 0)
  AutoencoderKLFlux2:  z = (patchify_2x2(mode(E(x))) - bn.running_mean) / sqrt(bn.running_var + eps)
Encoding uses the posterior mode, so encode is deterministic.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from pixdiff.errors import InputError
from pixdiff.latents.base import check_images, check_latents

SUPPORTED = ("AutoencoderKL", "AutoencoderKLFlux2")


def _model_class(name: str):
    import diffusers

    if name not in SUPPORTED:
        raise InputError(f"unsupported autoencoder class {name!r}; pixdiff reads {', '.join(SUPPORTED)}")
    return getattr(diffusers, name)


def load_diffusers_autoencoder(path: str | Path, dtype: torch.dtype = torch.float32):
    """Load from a diffusers folder (config.json + weights; a pipeline folder's vae/ is found too), or from a single
    .safetensors file with its config.json beside it (diffusers key names)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such autoencoder: {path}")
    if path.is_dir() and not (path / "config.json").exists() and (path / "vae" / "config.json").exists():
        path = path / "vae"
    folder = path if path.is_dir() else path.parent
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise InputError(f"{path}: no config.json {'in the folder' if path.is_dir() else 'beside the file'}; "
                         "pixdiff needs the diffusers config to build the autoencoder offline")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_file}: not valid JSON ({e})") from None
    cls = _model_class(cfg.get("_class_name", "?"))
    try:
        if path.is_dir():
            return cls.from_pretrained(folder, torch_dtype=dtype, local_files_only=True, low_cpu_mem_usage=False).eval()
        from safetensors.torch import load_file

        model = cls.from_config(cfg)
        sd = load_file(path)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise InputError(f"{path}: weights do not match the config ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")
        return model.to(dtype).eval()
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"cannot load autoencoder {path}: {e.__class__.__name__}: {str(e).splitlines()[0]}") from None


def patchify(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), channel order c*4 + 2*dy + dx (the FLUX.2 pipeline's order)."""
    return F.pixel_unshuffle(z, 2)


def unpatchify(z: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(z, 2)


class DiffusersVAE:
    """A diffusers autoencoder behind the LatentSource protocol."""

    def __init__(self, path: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32):
        self.vae = load_diffusers_autoencoder(path, dtype).requires_grad_(False)
        cfg = self.vae.config
        self.flux2 = type(self.vae).__name__ == "AutoencoderKLFlux2"
        self.name = name or Path(path).name
        patch = cfg.patch_size[0] if self.flux2 else 1
        self.factor = 2 ** (len(cfg.block_out_channels) - 1) * patch
        self.channels = cfg.latent_channels * patch * patch
        if self.flux2:
            self.mean = self.vae.bn.running_mean.float().view(1, -1, 1, 1)
            self.std = (self.vae.bn.running_var.float() + cfg.batch_norm_eps).sqrt().view(1, -1, 1, 1)
        else:
            self.mean = torch.tensor(float(cfg.shift_factor or 0.0))
            self.std = torch.tensor(1.0 / float(cfg.scaling_factor))

    def to(self, *args, **kw) -> "DiffusersVAE":
        self.vae.to(*args, **kw)
        self.mean, self.std = self.mean.to(*args, **kw), self.std.to(*args, **kw)
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.factor)
        dtype = next(self.vae.parameters()).dtype
        z = self.vae.encode(images.to(dtype)).latent_dist.mode().float()  # (B, C, H/8, W/8)
        if self.flux2:
            z = patchify(z)  # (B, 4C, H/16, W/16)
        return (z - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, self.channels, self.name)
        z = latents.float() * self.std + self.mean
        if self.flux2:
            z = unpatchify(z)
        dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(z.to(dtype)).sample.float().clamp(-1, 1)
