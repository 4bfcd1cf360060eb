"""Image I/O at the library's edge and the one anti-aliased bicubic resampler.

Inside pixdiff an image is a float tensor, NCHW, RGB, in [-1, 1]. uint8 and PIL appear only here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from pixdiff.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class LoadedImage:
    pixels: torch.Tensor  # (3, H, W) uint8
    path: Path
    note: str | None = None  # e.g. "converted RGBA -> RGB", to tell the user


def load_image(path: str | Path) -> LoadedImage:
    """Read an image file as RGB uint8 (3, H, W). Grey / RGBA / palette images are converted, and said so."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such image: {path}")
    if path.is_dir():
        raise InputError(f"expected an image file, got a folder: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "RGBA" or mode == "LA" or (mode == "P" and "transparency" in im.info):
                # Composite over white, the usual reading of a transparent background.
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
            else:
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read image {path}: {e.__class__.__name__}: {e}") from None
    note = None if mode == "RGB" else f"converted {mode} -> RGB"
    arr = np.asarray(rgb, dtype=np.uint8).copy()
    return LoadedImage(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), path, note)


def list_images(folders: str | Path | list) -> list[Path]:
    """All image files directly inside one or more folders, sorted by name."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"no such image folder: {folder}")
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, folders))}")
    return files


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (any leading shape)."""
    return pixels.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounded and clamped."""
    return images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write one (3, H, W) float [-1, 1] image as PNG (or by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8(image).permute(1, 2, 0).cpu().numpy()
    Image.fromarray(arr).save(path)
    return path


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anti-aliased bicubic resampling of (N, C, H, W) float images to size (h, w).

    This is the project's only resampler. torch's antialiased bicubic uses PIL's kernel (a = -0.5, support
    widened by the scale factor when shrinking), so it matches `PIL.Image.resize(..., BICUBIC)` (tested).
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images.float(), size=size, mode="bicubic", antialias=True, align_corners=False)


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Anti-aliased bicubic downsampling by an integer factor (the LQ image of a super-resolution pair)."""
    h, w = images.shape[-2:]
    if h % factor or w % factor:
        raise InputError(f"image size {h}x{w} is not divisible by the downsampling factor {factor}")
    return resize(images, (h // factor, w // factor))
