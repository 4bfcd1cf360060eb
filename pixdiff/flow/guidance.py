"""Classifier-free guidance: v = v_uncond + w (v_cond - v_uncond), in one batched call."""
from __future__ import annotations

from typing import Any, Callable

import torch


def classifier_free_guidance(model: Callable[..., torch.Tensor], cond: Any, uncond: Any, scale: float,
                             cat: Callable[[Any, Any], Any] | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Wrap model(x, t, cond) into a guided velocity field (x, t) -> v.

    scale = 1 is the plain conditional model (one call); otherwise cond and uncond go through the network as one
    batch of 2B. `cat` joins two conditionings along the batch (default: torch.cat for tensors).
    """
    if scale == 1.0:
        return lambda x, t: model(x, t, cond)
    cat = cat or (lambda a, b: torch.cat([a, b]))
    both = cat(cond, uncond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_c, v_u = model(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return v_u + scale * (v_c - v_u)

    return guided
