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


def sample_t_logit_normal_uniform(n: int, p_uniform: float, generator: torch.Generator | None = None,
                                  s: float = 1.0, t_min: float = 0.0,
                                  return_uniform: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Shifted logit-normal t, with a share `p_uniform` of the draws replaced by unshifted U(t_min, 1). Shape (n,);
    with return_uniform, also the (n,) bool mask of the uniform draws.

    At shift 3 the logit-normal puts 0.05% of its draws below t = 0.1, yet the last sampling steps run there; the
    uniform share covers them (P(t < 0.1) ~ p_uniform * (0.1 - t_min) / (1 - t_min)). p_uniform = 0 draws exactly
    what sample_t_logit_normal draws from the same generator."""
    if not 0.0 <= p_uniform <= 1.0:
        raise ValueError(f"p_uniform must lie in [0, 1], got {p_uniform:g}")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min:g}")
    t = sample_t_logit_normal(n, generator=generator, s=s)
    if p_uniform == 0.0:
        return (t, torch.zeros(n, dtype=torch.bool)) if return_uniform else t
    pick = torch.rand(n, generator=generator) < p_uniform
    t = torch.where(pick, t_min + (1.0 - t_min) * torch.rand(n, generator=generator), t)
    return (t, pick) if return_uniform else t


def timesteps(steps: int, s: float = 1.0, t_max: float = 1.0) -> torch.Tensor:
    """The inference grid: `steps + 1` times from t_max down to 0, evenly spaced then shifted. Shape (steps+1,).

    t_max < 1 starts from a partly noised input (image-to-image, or a latent handed over mid-trajectory)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift(torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64), s).float()
