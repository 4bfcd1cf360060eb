"""Random training crops from a folder of photos, deterministic for (seed, step).

The photos are decoded once and kept as uint8 in memory (about 50 photos, a few hundred MB). Each batch is drawn
with a generator seeded from (seed, step), so a resumed run sees exactly the batches it would have seen.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from pixdiff.data.images import list_images, load_image, resize, to_float
from pixdiff.errors import InputError


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """The generator for one training step: a pure function of (seed, step, stream)."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 7_919 + stream * 104_729) % (2**63 - 1))
    return g


def augment(crop: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random rotation by a multiple of 90 degrees, vertical flip, colour-channel permutation and saturation
    change (x 0 to 1.5 around the luma; 0 is grey) of a (1, 3, H, W) crop in [-1, 1]. Any image is a valid input
    to a decoder, so this widens what a model learns from few photos: a latent decoder trained on 42 photos reads
    their latents well (27.5 dB) and unseen ones 5 dB worse (docs/benchmarks.md)."""
    r = torch.rand(3, generator=generator)
    crop = torch.rot90(crop, int(r[0] * 4), dims=(-2, -1))
    if r[1] < 0.5:
        crop = crop.flip(-2)
    crop = crop[:, torch.randperm(3, generator=generator)]
    luma = (crop * torch.tensor([0.299, 0.587, 0.114], device=crop.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (luma + 1.5 * float(r[2]) * (crop - luma)).clamp(-1, 1)


class RandomCrops:
    """Square crops of `size` pixels with random position, horizontal flip and zoom (and, with `augment`, the
    rotations, flips and colour changes of `augment()`).

    zoom: the crop covers size * z native pixels (z drawn log-uniformly in [1, max_zoom]) and is resampled with
    the anti-aliased bicubic filter down to `size`, so the model sees both native detail and whole-photo
    layouts at the same crop size.
    """

    def __init__(self, folders, size: int, max_zoom: float = 1.0, augment: bool = False):
        self.paths = list_images(folders)
        self.images = [load_image(p).pixels for p in self.paths]
        self.size, self.max_zoom, self.augment = size, max_zoom, augment
        small = [p for p, im in zip(self.paths, self.images) if min(im.shape[-2:]) < size]
        if small:
            raise InputError(f"{len(small)} images are smaller than the crop size {size}: {small[0]}")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int, generator: torch.Generator, with_index: bool = False, device=None):
        """A batch of crops, (batch, 3, size, size) float in [-1, 1] (and which image each came from).
        device: where the crops are resampled and returned (the photos stay in CPU memory as uint8)."""
        out, which = [], []
        for _ in range(batch):
            which.append(int(torch.randint(len(self.images), (1,), generator=generator)))
            im = self.images[which[-1]]
            h, w = im.shape[-2:]
            zmax = min(self.max_zoom, h / self.size, w / self.size)
            z = math.exp(float(torch.rand((), generator=generator)) * math.log(max(zmax, 1.0)))
            side = max(self.size, int(round(self.size * z)))
            top = int(torch.randint(h - side + 1, (1,), generator=generator))
            left = int(torch.randint(w - side + 1, (1,), generator=generator))
            crop = to_float(im[:, top : top + side, left : left + side].to(device)).unsqueeze(0)
            crop = resize(crop, (self.size, self.size))
            if float(torch.rand((), generator=generator)) < 0.5:
                crop = crop.flip(-1)
            out.append(augment(crop, generator) if self.augment else crop)
        crops = torch.cat(out).clamp(-1, 1)
        return (crops, which) if with_index else crops


def eval_crops(folders, size: int = 256, per_image: int = 2, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """The fixed evaluation set: for each photo, one centre crop of the photo resized so its short side is
    `size` (whole-scene content) and `per_image - 1` native-resolution crops at seeded positions (fine detail).
    Photos smaller than `size` are skipped with a warning (an error when none is large enough).
    Returns (N, 3, size, size) in [-1, 1] and a name per crop."""
    crops, names, small_ones = [], [], []
    g = torch.Generator().manual_seed(seed)
    for path in list_images(folders):
        im = to_float(load_image(path).pixels).unsqueeze(0)
        h, w = im.shape[-2:]
        if min(h, w) < size:
            small_ones.append(f"{Path(path).name} ({w}x{h})")
            continue
        s = size / min(h, w)
        small = resize(im, (max(size, round(h * s)), max(size, round(w * s))))
        sh, sw = small.shape[-2:]
        crops.append(small[..., (sh - size) // 2 : (sh - size) // 2 + size, (sw - size) // 2 : (sw - size) // 2 + size])
        names.append(f"{Path(path).stem}-whole")
        for k in range(per_image - 1):
            top = int(torch.randint(h - size + 1, (1,), generator=g))
            left = int(torch.randint(w - size + 1, (1,), generator=g))
            crops.append(im[..., top : top + size, left : left + size])
            names.append(f"{Path(path).stem}-crop{k}")
    if small_ones and not crops:
        raise InputError(f"no photo is as large as the evaluation crop {size}: {', '.join(small_ones)}")
    if small_ones:
        warnings.warn(f"skipped {len(small_ones)} photos smaller than the crop {size}: {', '.join(small_ones)}",
                      stacklevel=2)
    return torch.cat(crops).clamp(-1, 1), names
