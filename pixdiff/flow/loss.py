"""The flow-matching (velocity) loss. Per-sample values; the trainer reduces."""
from __future__ import annotations

from typing import Callable

import torch

from pixdiff.flow.time import interpolate, velocity_target


def velocity_loss(v_pred: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true velocity, one value per sample: (B, ...) -> (B,)."""
    return (v_pred.float() - velocity_target(x0, eps).float()).square().flatten(1).mean(1)


def flow_matching_loss(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                       t: torch.Tensor, generator: torch.Generator | None = None,
                       eps: torch.Tensor | None = None) -> torch.Tensor:
    """Noise x0 at times t (B,), ask model(x_t, t) for the velocity, return the per-sample loss (B,).
    eps: the noise paired with each x0 (default: drawn independently, the usual flow matching)."""
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    return velocity_loss(model(interpolate(x0, eps, t), t), x0, eps)
