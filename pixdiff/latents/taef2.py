"""`taef2`: the tiny autoencoder of the FLUX.2 latent space (Ollin Boer Bohan, taesd project, MIT).

Our own module written from the architecture described in ../shared/weights/taef2/README.md: 32 latent channels at 1/8
resolution. The network works on images in [0, 1]; this source converts from and to pixdiff's [-1, 1]. The latents
are used as they come (roughly unit scale, std about 0.85 on photos): TAEF2 has no normalisation of its own.
Weights are never shipped with pixdiff: pass a folder (`--weights`, or $PIXDIFF_TAEF2).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from pixdiff.errors import InputError
from pixdiff.latents.base import check_images, check_latents

SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}


def conv(c_in: int, c_out: int, **kw) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, **kw)


class Block(nn.Module):
    """relu(conv(x) + x); with gn=True a 1x1 bottleneck with GroupNorm is added first: x = x + pool(x)."""

    def __init__(self, c: int = 64, gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU(), conv(c, c))
        self.pool = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.GroupNorm(4, 4 * c), nn.ReLU(),
                                  nn.Conv2d(4 * c, c, 1, bias=False)) if gn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def taef2_encoder(c: int = 64, latent_channels: int = 32) -> nn.Sequential:
    down = lambda: conv(c, c, stride=2, bias=False)  # noqa: E731
    return nn.Sequential(
        conv(3, c), Block(c), down(), Block(c), Block(c), Block(c), down(), Block(c), Block(c), Block(c),
        down(), Block(c, gn=True), Block(c, gn=True), Block(c, gn=True), conv(c, latent_channels))


def taef2_decoder(c: int = 64, latent_channels: int = 32) -> nn.Sequential:
    up = lambda: nn.Upsample(scale_factor=2)  # noqa: E731
    nobias = lambda: conv(c, c, bias=False)  # noqa: E731
    return nn.Sequential(
        Clamp(), conv(latent_channels, c), nn.ReLU(), Block(c, gn=True), Block(c, gn=True), Block(c, gn=True),
        up(), nobias(), Block(c), Block(c), Block(c), up(), nobias(), Block(c), Block(c), Block(c),
        up(), nobias(), Block(c), conv(c, 3))


def find_weights(weights: str | Path | None = None) -> Path:
    folder = weights or os.environ.get("PIXDIFF_TAEF2")
    if not folder:
        raise InputError("taef2 needs its weights: pass --weights DIR (a folder with taef2_encoder.pth and "
                         "taef2_decoder.pth, from github.com/madebyollin/taesd) or set PIXDIFF_TAEF2")
    folder = Path(folder)
    for f in SHA256:
        if not (folder / f).exists():
            raise InputError(f"taef2: {folder / f} not found")
    return folder


def _load(module: nn.Module, path: Path, verify: bool) -> None:
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != SHA256[path.name]:
            raise InputError(f"taef2: {path} has sha256 {digest[:12]}..., expected {SHA256[path.name][:12]}... "
                             "(corrupt or a different file)")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict({k: v.float() for k, v in sd.items()})
    except Exception as e:
        raise InputError(f"taef2: cannot load {path}: {e.__class__.__name__}: {str(e).splitlines()[0]}") from None


class TAEF2:
    name = "taef2"
    channels = 32
    factor = 8

    def __init__(self, weights: str | Path | None = None, verify: bool = True):
        folder = find_weights(weights)
        self.encoder, self.decoder = taef2_encoder().eval(), taef2_decoder().eval()
        _load(self.encoder, folder / "taef2_encoder.pth", verify)
        _load(self.decoder, folder / "taef2_decoder.pth", verify)
        self.encoder.requires_grad_(False)
        self.decoder.requires_grad_(False)

    def to(self, *args, **kw) -> "TAEF2":
        self.encoder.to(*args, **kw)
        self.decoder.to(*args, **kw)
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.factor)
        return self.encoder(images.add(1).div(2))  # (B, 32, H/8, W/8)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        check_latents(latents, self.channels, self.name)
        return self.decoder(latents).clamp(0, 1).mul(2).sub(1)  # (B, 3, 8h, 8w) in [-1, 1]
