"""`load_latent_source(name_or_path)`: names resolve to built-in sources or shipped weights, paths to folders/files."""
from __future__ import annotations

import re
from pathlib import Path

from pixdiff.errors import InputError
from pixdiff.latents.base import LatentSource

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"

NAMES = {
    "vae-f8c16": "pixdiff's own VAE (AutoencoderKL, 8x, 16 channels), shipped",
    "taef2": "tiny autoencoder of the FLUX.2 latent space (8x, 32 channels); weights via --weights / $PIXDIFF_TAEF2",
    "pixels": "pixel-unshuffle, no weights (pixels-f2, pixels-f4, ... for other factors)",
    "<source>-decoded": "a source's own decoded image as a factor-1 'latent' (what decode-then-SR cascades see)",
}


def shipped(name: str) -> Path | None:
    """The folder of shipped weights called `name`, if it exists."""
    folder = WEIGHTS_DIR / name
    return folder if (folder / "config.json").exists() else None


def load_latent_source(name_or_path: str | Path, weights: str | Path | None = None) -> LatentSource:
    """A latent source by name ("vae-f8c16", "taef2", "pixels", "pixels-f4") or path (a diffusers autoencoder
    folder, a pipeline folder with vae/, a .safetensors file with config.json beside it, or a TAEF2 folder)."""
    s = str(name_or_path)
    if s.endswith("-decoded"):
        from pixdiff.latents.decoded import DecodedSource
        return DecodedSource(load_latent_source(s[: -len("-decoded")], weights))
    if s == "taef2":
        from pixdiff.latents.taef2 import TAEF2

        return TAEF2(weights)
    if m := re.fullmatch(r"pixels(?:-f(\d+))?", s):
        from pixdiff.latents.pixels import PixelSource

        return PixelSource(int(m.group(1) or 8))
    from pixdiff.latents.diffusers_vae import DiffusersVAE

    if folder := shipped(s):
        return DiffusersVAE(folder, name=s)
    path = Path(s)
    if path.is_dir() and (path / "taef2_decoder.pth").exists():
        from pixdiff.latents.taef2 import TAEF2

        return TAEF2(path)
    if path.exists():
        return DiffusersVAE(path)
    if s in NAMES:
        raise InputError(f"latent source {s!r} has no weights in this installation ({WEIGHTS_DIR / s} is missing)")
    raise InputError(f"unknown latent source {s!r}: not a path and not one of {', '.join(NAMES)}")
