"""Where t comes from: training-time samplers of t, and the inference time grid."""
from __future__ import annotations

import torch

from pixdiff.flow.time import shift


def sample_t_uniform(n: int, generator: torch.Generator | None = None, s: float = 1.0) -> torch.Tensor:
    """t ~ U(0, 1), then shifted by s. Shape (n,)."""
    return shift(torch.rand(n, generator=generator), s)


def sample_t_logit_normal(n: int, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                          s: float = 1.0) -> torch.Tensor:
    """t = sigmoid(mean + std * N(0, 1)) (SD3's logit-normal), then shifted by s. Shape (n,)."""
    return shift(torch.sigmoid(mean + std * torch.randn(n, generator=generator)), s)


def timesteps(steps: int, s: float = 1.0, t_max: float = 1.0) -> torch.Tensor:
    """The inference grid: `steps + 1` times from t_max down to 0, evenly spaced then shifted. Shape (steps+1,).

    t_max < 1 starts from a partly noised input (image-to-image, or a latent handed over mid-trajectory)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift(torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64), s).float()
