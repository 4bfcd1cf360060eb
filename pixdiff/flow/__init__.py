"""Flow matching: the time convention, t-samplers and grids, the velocity loss, guidance and samplers."""
from pixdiff.flow.guidance import classifier_free_guidance
from pixdiff.flow.loss import flow_matching_loss, velocity_loss
from pixdiff.flow.samplers import SAMPLERS, get_sampler, sample_euler, sample_heun, sample_x0_renoise
from pixdiff.flow.schedule import (sample_t_logit_normal, sample_t_logit_normal_uniform, sample_t_uniform,
                                   timesteps)
from pixdiff.flow.time import (SIGMA_DATA, T_MIN, eps_from_velocity, interpolate, resolution_shift, shift,
                               velocity_from_preconditioned, velocity_from_x0, velocity_target, x0_from_velocity)

__all__ = ["classifier_free_guidance", "flow_matching_loss", "velocity_loss", "SAMPLERS", "get_sampler",
           "sample_euler", "sample_heun", "sample_x0_renoise", "sample_t_logit_normal",
           "sample_t_logit_normal_uniform", "sample_t_uniform",
           "timesteps", "eps_from_velocity", "interpolate", "resolution_shift", "shift", "velocity_target",
           "x0_from_velocity", "T_MIN", "velocity_from_x0", "SIGMA_DATA", "velocity_from_preconditioned"]
