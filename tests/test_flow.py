"""Flow-matching core against the closed-form solution for Gaussian data.

Data x0 ~ N(mu, diag(s^2)), eps ~ N(0, I), x_t = (1 - t) x0 + t eps. Then (x_t, v) are jointly Gaussian, so the
optimal velocity E[v | x_t] is linear in x_t and the minimum of the loss at time t is Var(v) - Cov(v, x_t)^2 / Var(x_t)
per dimension.
"""
import math

import pytest
import torch

from pixdiff import flow

MU = torch.tensor([1.5, -0.5, 0.0, 3.0])
S = torch.tensor([0.5, 1.0, 2.0, 0.3])


def oracle_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t[:, None].double()
    mu, s2 = MU.double(), S.double() ** 2
    var_xt = (1 - t) ** 2 * s2 + t**2
    cov = t - (1 - t) * s2  # Cov(eps - x0, (1 - t) x0 + t eps)
    return (-mu + cov / var_xt * (x.double() - (1 - t) * mu)).to(x.dtype)


def flow_map_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What a perfect few-step (consistency / distilled) model predicts: x0 = the probability-flow ODE map from t to 0,
    which for Gaussian data keeps the standardised coordinate (x_t - m_t) / sd_t, written as a velocity."""
    t = t[:, None].double()
    mu, s = MU.double(), S.double()
    sd_t = ((1 - t) ** 2 * s**2 + t**2).sqrt()
    x0 = mu + s * (x.double() - (1 - t) * mu) / sd_t
    return ((x.double() - x0) / t).to(x.dtype)


def oracle_min_loss(t: float) -> float:
    s2 = S.double() ** 2
    per_dim = s2 + 1 - (t - (1 - t) * s2) ** 2 / ((1 - t) ** 2 * s2 + t**2)
    return float(per_dim.mean())


def test_time_convention_identities():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    t = torch.tensor([0.0, 0.3, 1.0])
    xt = flow.interpolate(x0, eps, t)
    assert torch.allclose(xt[0], x0[0]) and torch.allclose(xt[2], eps[2])
    v = flow.velocity_target(x0, eps)
    assert torch.allclose(flow.x0_from_velocity(xt, t, v), x0, atol=1e-6)
    assert torch.allclose(flow.eps_from_velocity(xt, t, v), eps, atol=1e-6)
    assert torch.allclose(flow.velocity_from_x0(xt[1:], t[1:], x0[1:]), v[1:], atol=1e-6)  # t >= T_MIN: exact
    assert torch.allclose(flow.velocity_from_x0(xt[:1], t[:1], x0[:1]), (xt[:1] - x0[:1]) / flow.T_MIN)  # clipped


@pytest.mark.parametrize("t", [0.02, 0.3, 0.9, 1.0])
def test_preconditioned_output_has_unit_variance_and_gives_the_true_velocity(t):
    # x0 ~ N(0, s^2): the output f that reproduces x0 = c_skip x_t + c_out f is a unit-variance target at every t
    s, n = flow.SIGMA_DATA, 400_000
    g = torch.Generator().manual_seed(2)
    x0 = s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    xt = flow.interpolate(x0, eps, tt)
    d = (1 - t) ** 2 * s**2 + t**2
    f = (x0 - (1 - t) * s**2 / d * xt) / (t * s / math.sqrt(d))
    assert float(f.var()) == pytest.approx(1.0, abs=0.01)
    assert torch.allclose(flow.velocity_from_preconditioned(xt, tt, f), flow.velocity_target(x0, eps), atol=1e-9)


def test_preconditioned_at_t_zero_is_finite_and_passes_the_image_through():
    x0, f = torch.randn(2, 3), torch.randn(2, 3)
    v = flow.velocity_from_preconditioned(x0, torch.zeros(2), f)
    assert torch.allclose(v, -x0 - f)  # x0 = x_t - 0 * v whatever f: the clean image passes through
    assert torch.allclose(flow.x0_from_velocity(x0, 0.0, v), x0)


def test_shift_properties():
    t = torch.linspace(0, 1, 11)
    assert torch.allclose(flow.shift(t, 1.0), t)
    assert torch.allclose(flow.shift(flow.shift(t, 2.0), 1.5), flow.shift(t, 3.0), atol=1e-6)
    assert flow.shift(0.5, 3.0) == pytest.approx(0.75)
    assert flow.resolution_shift(512 * 512, base_pixels=256 * 256, base_shift=1.5) == pytest.approx(3.0)
    grid = flow.timesteps(10, s=3.0)
    assert grid[0] == 1 and grid[-1] == 0 and bool((grid[1:] < grid[:-1]).all()) and len(grid) == 11


def test_t_samplers_statistics():
    g = torch.Generator().manual_seed(0)
    t = flow.sample_t_logit_normal(200_000, mean=0.5, std=0.8, generator=g)
    logit = torch.log(t / (1 - t))
    assert float(logit.mean()) == pytest.approx(0.5, abs=0.01) and float(logit.std()) == pytest.approx(0.8, abs=0.01)
    u = flow.sample_t_uniform(200_000, generator=g, s=3.0)
    # P(shift(U, 3) < 0.75) = P(U < 0.5) = 0.5
    assert float((u < 0.75).float().mean()) == pytest.approx(0.5, abs=0.005)


def test_low_noise_share_of_the_mixed_t_sampler():
    # P(shift(sigmoid(N), 3) < 0.1) = Phi(logit(0.1 / 2.8)): the logit-normal's share; the uniform share adds its own
    ln = 0.5 * (1 + math.erf(math.log((0.1 / 2.8) / (1 - 0.1 / 2.8)) / math.sqrt(2)))
    assert ln == pytest.approx(0.00049, abs=1e-5)
    t = flow.sample_t_logit_normal_uniform(400_000, 0.25, torch.Generator().manual_seed(0), s=3.0, t_min=0.05)
    expect = 0.25 * (0.1 - 0.05) / (1 - 0.05) + 0.75 * ln
    assert float((t < 0.1).float().mean()) == pytest.approx(expect, abs=8e-4)
    assert float((t < 0.05).float().mean()) < 0.001  # below t_min: only the logit-normal's own rare draws
    # p_uniform = 0 is the plain sampler, draw for draw (runs made before the option reproduce)
    a = flow.sample_t_logit_normal_uniform(64, 0.0, torch.Generator().manual_seed(3), s=3.0)
    assert torch.equal(a, flow.sample_t_logit_normal(64, generator=torch.Generator().manual_seed(3), s=3.0))
    for bad, msg in ((dict(p_uniform=1.5), "p_uniform must lie in"), (dict(p_uniform=0.2, t_min=1.0), "t_min must")):
        with pytest.raises(ValueError, match=msg):
            flow.sample_t_logit_normal_uniform(4, **bad)


@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_loss_at_oracle_equals_analytic_minimum(t):
    g = torch.Generator().manual_seed(1)
    n = 400_000
    x0 = MU + S * torch.randn(n, 4, generator=g, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    loss = flow.flow_matching_loss(oracle_velocity, x0, tt, generator=g)
    assert loss.shape == (n,)
    assert float(loss.mean()) == pytest.approx(oracle_min_loss(t), rel=0.01)
    # any other velocity field does worse
    worse = flow.flow_matching_loss(lambda x, t: 1.05 * oracle_velocity(x, t), x0, tt, generator=g)
    assert float(worse.mean()) > oracle_min_loss(t) * 1.0005


@pytest.mark.parametrize("name,steps,shift,tol", [("euler", 200, 1.0, 0.02), ("euler", 100, 3.0, 0.05),
                                                  ("heun", 12, 3.0, 0.02)])
def test_ode_samplers_reproduce_the_gaussian(name, steps, shift, tol):
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(50_000, 4, generator=g, dtype=torch.float64)
    out = flow.get_sampler(name)(oracle_velocity, x1, flow.timesteps(steps, s=shift).double())
    assert bool(((out.mean(0) - MU).abs() <= 0.02 + tol * S).all()), out.mean(0)
    assert bool(((out.std(0) / S - 1).abs() <= tol).all()), out.std(0)


def test_heun_is_more_accurate_than_euler_at_equal_calls():
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    exact = flow.sample_heun(oracle_velocity, x1, flow.timesteps(400, s=3.0).double())
    euler = flow.sample_euler(oracle_velocity, x1, flow.timesteps(12, s=3.0).double())
    heun = flow.sample_heun(oracle_velocity, x1, flow.timesteps(6, s=3.0).double())  # 11 calls
    assert (heun - exact).abs().mean() < 0.5 * (euler - exact).abs().mean()


def test_x0_renoise_sampler_with_a_perfect_few_step_model():
    g = torch.Generator().manual_seed(4)
    x1 = torch.randn(50_000, 4, generator=g, dtype=torch.float64)
    grid = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)  # 4 steps
    out = flow.sample_x0_renoise(flow_map_velocity, x1, grid, generator=torch.Generator().manual_seed(5))
    assert bool(((out.mean(0) - MU).abs() < 0.03).all()), out.mean(0)
    assert bool(((out.std(0) / S - 1).abs() < 0.01).all()), out.std(0)
    again = flow.sample_x0_renoise(flow_map_velocity, x1, grid, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, again)
    # Driven by the posterior-mean (MMSE) velocity instead, re-noising cannot restore the lost variance:
    # the sampler is only right for models distilled to produce samples.
    mmse = flow.sample_x0_renoise(oracle_velocity, x1, grid, generator=torch.Generator().manual_seed(5))
    assert bool((mmse.std(0) < 0.8 * S).all())


def test_classifier_free_guidance_combination():
    calls = []

    def model(x, t, c):
        calls.append(x.shape[0])
        return x * 0 + c[:, None]

    x, t = torch.zeros(3, 2), torch.full((3,), 0.5)
    cond, uncond = torch.full((3,), 2.0), torch.full((3,), -1.0)
    v = flow.classifier_free_guidance(model, cond, uncond, scale=4.0)(x, t)
    assert torch.allclose(v, torch.full((3, 2), -1.0 + 4.0 * 3.0)) and calls == [6]
    v1 = flow.classifier_free_guidance(model, cond, uncond, scale=1.0)(x, t)
    assert torch.allclose(v1, torch.full((3, 2), 2.0)) and calls[-1] == 3


def test_guided_oracle_sampling_shifts_the_mean():
    # Conditional data = the Gaussian shifted by c. The oracle velocity is affine in the data mean, so guidance with
    # scale w is exactly the velocity of the Gaussian with mean mu_u + w (mu_c - mu_u): sampling must land there.
    def model(x, t, c):
        return oracle_velocity(x - (1 - t[:, None]) * c[:, None], t) - c[:, None]

    g = torch.Generator().manual_seed(6)
    x1 = torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    c, u = torch.ones(20_000, dtype=torch.float64), torch.zeros(20_000, dtype=torch.float64)
    out = flow.sample_heun(flow.classifier_free_guidance(model, c, u, 2.0), x1, flow.timesteps(20).double())
    assert bool(((out.mean(0) - (MU + 2.0)).abs() < 0.03).all()), out.mean(0)
    assert bool(((out.std(0) / S - 1).abs() < 0.02).all()), out.std(0)
