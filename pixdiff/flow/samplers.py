"""Samplers for velocity fields. One signature for all:

    sample_<name>(velocity, x, timesteps, *, generator=None, callback=None) -> x0

velocity(x, t) -> v with t of shape (B,); x is the starting point at timesteps[0] (pure noise when that is 1);
timesteps is a decreasing grid ending at 0 (see `schedule.timesteps`). callback(i, t, x) sees each step.
"""
from __future__ import annotations

from typing import Callable

import torch

from pixdiff.flow.time import interpolate, x0_from_velocity

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _t(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(x.device, x.dtype).expand(x.shape[0])


@torch.no_grad()
def sample_euler(velocity: Velocity, x: torch.Tensor, timesteps: torch.Tensor, *, generator=None, callback=None):
    """First-order ODE steps: x <- x + (t_next - t) v(x, t). One network call per step."""
    for i, (t, t_next) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        x = x + (t_next - t) * velocity(x, _t(t, x))
        if callback:
            callback(i, t_next, x)
    return x


@torch.no_grad()
def sample_heun(velocity: Velocity, x: torch.Tensor, timesteps: torch.Tensor, *, generator=None, callback=None):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn): an Euler predictor, then the
    average of the slopes at both ends. Unlike EDM's version, the last step to t = 0 is corrected too: a velocity
    field is finite at t = 0, and skipping the correction there costs most of the accuracy on shifted grids,
    whose last step is the longest. Two network calls per step."""
    for i, (t, t_next) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        v = velocity(x, _t(t, x))
        x_euler = x + (t_next - t) * v
        x = x + (t_next - t) * 0.5 * (v + velocity(x_euler, _t(t_next, x)))
        if callback:
            callback(i, t_next, x)
    return x


@torch.no_grad()
def sample_x0_renoise(velocity: Velocity, x: torch.Tensor, timesteps: torch.Tensor, *, generator=None,
                      callback=None):
    """The few-step sampler of distilled models (consistency / DMD2 style): predict x0 = x_t - t v, then re-noise it
    to the next time with fresh noise, x_next = (1 - t_next) x0 + t_next eps. One call per step."""
    for i, (t, t_next) in enumerate(zip(timesteps[:-1], timesteps[1:])):
        x0 = x0_from_velocity(x, t, velocity(x, _t(t, x)))
        if t_next > 0:
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x = interpolate(x0, eps, t_next)
        else:
            x = x0
        if callback:
            callback(i, t_next, x)
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "x0-renoise": sample_x0_renoise}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
