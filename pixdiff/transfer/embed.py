"""A latent-aligned pixel patch embedding: an option beyond the L2P paper, which initialises it at random.

The student's new patch embedding is set to the source's latent patch embedding composed with an affine map
z ~ M x + c from a pixel patch x to the latent patch z that the source's VAE encodes it to, fitted on images (the
synthetic set, so still no real image). M is a least-squares fit inside the images' principal subspace, plus a
component in the directions the images do not use, chosen so that M maps white pixel noise to (nearly) white latent
noise (M M^T ~ I). A noisy image x_t = (1 - t) x0 + t eps then embeds as the source embeds (1 - t) z0' + t eps' with
z0' ~ encode(x0) and eps' ~ N(0, I): from the first step the frozen middle blocks see inputs of the kind they were
trained on, at the noise level the time embedding tells them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pixdiff.errors import InputError


@dataclass
class Alignment:
    map: torch.Tensor  # M, (d_latent, d_pixel)
    offset: torch.Tensor  # c, (d_latent,)
    r2: float  # of M x + c against the encoder's latent patches, on the fitting patches
    noise_gain: float  # mean variance per latent dimension of M eps for white eps (the source's noise: 1)
    subspace: int  # principal pixel directions the least-squares fit uses
    patches: int  # patches it was fitted on

    def describe(self) -> str:
        return (f"latent-aligned patch embedding: fit on {self.patches} patches, R^2 {self.r2:.3f} against the "
                f"encoder's latents, noise gain {self.noise_gain:.3f} (white noise stays white at 1)")


def fit_alignment(pixels: torch.Tensor, latents: torch.Tensor, keep: float = 0.999, ridge: float = 1e-3,
                  seed: int = 0) -> Alignment:
    """pixels: (N, d_pixel) patches; latents: (N, d_latent) the latent patches they encode to. keep: share of the
    pixel variance whose principal directions the fit may use (the rest carries the noise-matching component);
    ridge: Tikhonov weight relative to the largest pixel variance."""
    if pixels.ndim != 2 or latents.ndim != 2 or len(pixels) != len(latents):
        raise InputError(f"fit_alignment takes (N, d) pixel and latent patches, got {tuple(pixels.shape)} and "
                         f"{tuple(latents.shape)}")
    (n, dp), dl = pixels.shape, latents.shape[1]
    if dp <= dl or n < 2 * dl:
        raise InputError(f"a latent-aligned embedding needs pixel patches wider than latent ones and at least "
                         f"{2 * dl} patches; got d_pixel {dp}, d_latent {dl}, {n} patches")
    x, z = pixels.double(), latents.double()
    mx, mz = x.mean(0), z.mean(0)
    x, z = x - mx, z - mz
    var, basis = torch.linalg.eigh(x.T @ x / n)
    var, basis = var.flip(0).clamp(min=0), basis.flip(1)  # descending
    k = int((var.cumsum(0) / var.sum() < keep).sum()) + 1
    k = min(k, dp - dl)  # leave room for the noise component
    used, unused = basis[:, :k], basis[:, k:]
    p = x @ used  # (N, k)
    a = torch.linalg.solve(p.T @ p / n + ridge * var[0] * torch.eye(k, dtype=p.dtype), p.T @ z / n).T @ used.T
    # Noise: eps -> a eps has covariance a a^T; add b (on the unused directions, which the images barely touch) so
    # that the total is the identity where a a^T <= 1.
    gain, vecs = torch.linalg.eigh(a @ a.T)
    g = torch.Generator().manual_seed(seed)
    rot = torch.linalg.qr(torch.randn(dp - k, dl, generator=g, dtype=torch.float64))[0]  # (dp - k, dl) orthonormal
    b = vecs @ torch.diag((1 - gain).clamp(min=0).sqrt()) @ rot.T  # (dl, dp - k)
    m = a + b @ unused.T
    r2 = 1 - float(((x @ m.T - z) ** 2).sum() / (z**2).sum())
    return Alignment(m.float(), (mz - m @ mx).float(), r2, float(torch.diag(m @ m.T).mean()), k, n)


@torch.no_grad()
def alignment_from_images(images: torch.Tensor, encode, family, patch: int, latent_patch: int, batch: int = 64,
                          seed: int = 0) -> Alignment:
    """Fit the alignment on images (N, 3, H, W) in [-1, 1] and `encode` (the source's latent encoder, giving the
    latents its transformer sees), in the order `family` flattens a patch for its embedding."""
    xs, zs = [], []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        xs.append(family.patch_vectors(chunk.float(), patch))
        zs.append(family.patch_vectors(encode(chunk).float().cpu(), latent_patch))
    return fit_alignment(torch.cat(xs), torch.cat(zs), seed=seed)


def aligned_embedding(weight: torch.Tensor, bias: torch.Tensor, alignment: Alignment
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The source's latent embedding (W, b) on a flat latent patch, composed with z = M x + c: (W M, b + W c)."""
    w = weight.double()
    return (w @ alignment.map.double()).float(), (bias.double() + w @ alignment.offset.double()).float()


def couple_noise(eps_latent: torch.Tensor, xi: torch.Tensor, embed_map: torch.Tensor, family, patch: int
                 ) -> torch.Tensor:
    """Pixel noise that the aligned embedding reads as the source's latent noise (coupled noise, beyond the paper).

    eps_latent: (B, C, h, w) the source's starting noise; xi: (B, 3, H, W) fresh white noise; embed_map: M,
    (d_latent, d_pixel) on flat patches in `family`'s order; patch: the pixel patch. Per patch,
    eps = M^+ eps_latent + (I - M^+ M) xi, so that M eps = eps_latent exactly, and eps ~ N(0, I) where M M^T = I
    (fit_alignment makes it so up to its noise gain, e.g. 1.007). Returns (B, 3, H, W)."""
    latent_patch = patch * eps_latent.shape[-1] // xi.shape[-1]
    m = embed_map.double()
    pinv = torch.linalg.pinv(m)  # (d_pixel, d_latent)
    z = family.patch_vectors(eps_latent.double(), latent_patch)  # (B N, d_latent)
    v = family.patch_vectors(xi.double(), patch)  # (B N, d_pixel)
    eps = z @ pinv.T + v - (v @ m.T) @ pinv.T
    return family.from_patch_vectors(eps, patch, xi.shape).to(xi.dtype)
