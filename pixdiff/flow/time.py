r"""The time convention of pixdiff, defined here and nowhere else.

t in [0, 1], t = 1 is pure noise (FLUX / SD3 / Z-Image):
    x_t = (1 - t) x0 + t eps,    v = eps - x0,    x0 = x_t - t v,    eps = x_t + (1 - t) v.
Time shift (SD3 eq. 23): t' = s t / (1 + (s - 1) t); s > 1 spends more steps at high noise, which larger
images need because their pixels are more redundant. `resolution_shift` gives s from the pixel count.
"""
from __future__ import annotations

import math

import torch


def _bcast(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """t as a tensor that broadcasts over `like`'s (B, ...) shape: (B,) -> (B, 1, 1, ...)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim)) if t.ndim else t


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v = d x_t / dt = eps - x0."""
    return eps - x0


def x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """x0 = x_t - t v."""
    return x_t - _bcast(t, x_t) * v


T_MIN = 0.05  # x-prediction: the smallest t used to turn a clean image into a velocity (JiT clips 1 - t alike)


def velocity_from_x0(x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, t_min: float = T_MIN) -> torch.Tensor:
    """v = (x_t - x0) / t for a network that predicts the clean image; t (B,) is clipped at t_min, where the
    division would blow up the prediction's error."""
    return (x_t - x0) / t.clamp(min=t_min).view(-1, *(1,) * (x_t.ndim - 1))


SIGMA_DATA = 0.5  # EDM's data standard deviation, for images in [-1, 1]


def velocity_from_preconditioned(x_t: torch.Tensor, t: torch.Tensor, f: torch.Tensor,
                                 sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's preconditioning (Karras et al. 2022) on this path: the network's output f is read as the clean image
    x0 = c_skip x_t + c_out f, c_skip = (1 - t) s^2 / D, c_out = t s / sqrt(D), D = (1 - t)^2 s^2 + t^2 (s the data
    std), so f's target has unit variance at every t: the clean image at high noise (as x-prediction), the noise at
    low noise, where x_t passes straight through. Returns v = (x_t - x0) / t = a x_t - b f with a = (t - (1 - t) s^2)
    / D and b = s / sqrt(D): no division by t, so no clip. t: (B,)."""
    t = _bcast(t, x_t)
    d = (1 - t) ** 2 * sigma_data**2 + t**2
    return (t - (1 - t) * sigma_data**2) / d * x_t - sigma_data / d.sqrt() * f


def eps_from_velocity(x_t: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """eps = x_t + (1 - t) v."""
    return x_t + (1 - _bcast(t, x_t)) * v


def shift(t: torch.Tensor | float, s: float) -> torch.Tensor | float:
    """t' = s t / (1 + (s - 1) t). s = 1 is the identity; shift(shift(t, a), b) = shift(t, a b)."""
    return s * t / (1 + (s - 1) * t)


def resolution_shift(num_pixels: int, base_pixels: int = 256 * 256, base_shift: float = 1.0) -> float:
    """The shift for an image of num_pixels: base_shift at base_pixels, growing with the side length
    (s proportional to sqrt(pixels), SD3 section 5.3.2), so the signal-to-noise ratio per image region
    at a given t stays comparable across resolutions."""
    if num_pixels <= 0:
        raise ValueError(f"num_pixels must be positive, got {num_pixels}")
    return base_shift * math.sqrt(num_pixels / base_pixels)
