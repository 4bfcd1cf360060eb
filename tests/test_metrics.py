"""Metrics against known values."""
import math

import pytest
import torch

from pixdiff import InputError
from pixdiff.eval import metrics


def pair(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    return ref, ref + 0.1 * torch.randn(ref.shape, generator=g)


def test_psnr_matches_definition():
    ref = torch.zeros(2, 3, 8, 8)
    pred = ref + torch.tensor([0.2, 0.02]).view(2, 1, 1, 1)  # error 0.1 and 0.01 in [0, 1] units
    assert torch.allclose(metrics.psnr(pred, ref), torch.tensor([20.0, 40.0]), atol=1e-4)


def test_ssim_and_ms_ssim_identity_and_ordering():
    ref, noisy = pair(size=192)
    assert torch.allclose(metrics.ssim(ref, ref), torch.ones(2), atol=1e-5)
    assert torch.allclose(metrics.ms_ssim(ref, ref), torch.ones(2), atol=1e-5)
    assert bool((metrics.ssim(noisy, ref) < 0.99).all())
    assert bool(metrics.ms_ssim(ref[:, :, :64, :64], ref[:, :, :64, :64]).isnan().all())  # too small: NaN


def test_ciede2000_zero_for_identical_and_known_for_black_white():
    ref, _ = pair()
    assert torch.allclose(metrics.ciede2000(ref, ref), torch.zeros(2), atol=1e-6)
    black, white = -torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert float(metrics.ciede2000(black, white)[0]) == pytest.approx(100.0, abs=0.01)  # L* 0 vs 100


def test_high_frequency_scores():
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    blurred = metrics.gaussian_blur(ref, 2.0)
    assert bool((metrics.hf_energy_ratio(blurred, ref) < 0.2).all())
    assert torch.allclose(metrics.hf_energy_ratio(ref, ref), torch.ones(2))
    assert torch.allclose(metrics.hf_correlation(ref, ref), torch.ones(2), atol=1e-5)
    doubled = 2 * ref  # the high-pass is linear: twice the detail, energy ratio 4, still perfectly correlated
    assert torch.allclose(metrics.hf_energy_ratio(doubled, ref), torch.full((2,), 4.0), rtol=1e-4)
    assert torch.allclose(metrics.hf_correlation(doubled, ref), torch.ones(2), atol=1e-5)
    unrelated = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    assert bool((metrics.hf_correlation(unrelated, ref).abs() < 0.05).all())
    const = torch.zeros(1, 3, 16, 16)
    assert float(metrics.hf_energy_ratio(const, const)) == 0.0


def test_frechet_distance_gaussians():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # closed form for N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2 * 2I) = 1 + 3
    assert metrics.frechet_distance(a, b) == pytest.approx(4.0, rel=0.03)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError, match="expected \\(N, D\\)"):
        metrics.frechet_distance(a, b[:, :2])


def test_metric_shape_mismatch():
    with pytest.raises(InputError, match="same shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_taef2_features(taef2_dir):
    from pixdiff.eval.features import TAEF2Features

    net = TAEF2Features(taef2_dir)
    ref, noisy = pair(size=64)
    f = net(ref)
    assert f.shape == (2, net.dim) and net.dim == 512 and math.isfinite(float(f.sum()))


def test_blockiness_sees_a_patch_grid_and_nothing_else():
    torch.manual_seed(0)
    smooth = metrics.gaussian_blur(torch.rand(2, 3, 64, 64) * 2 - 1, 2.0)
    assert float((metrics.blockiness(smooth) - 1).abs().max()) < 0.1
    steps = torch.rand(2, 3, 4, 4).repeat_interleave(16, -1).repeat_interleave(16, -2)  # flat 16x16 patches
    blocky = smooth * 0.2 + steps
    assert float(metrics.blockiness(blocky).min()) > 3
    # the same steps off the grid (shifted by 8 pixels) are edges, not a patch grid
    assert float(metrics.blockiness(blocky.roll(8, -1).roll(8, -2)).max()) < 0.7
    with pytest.raises(InputError, match="no interior 16-pixel grid line"):
        metrics.blockiness(torch.rand(1, 3, 16, 16))


def test_peak_memory_of_a_call_is_measured_in_a_fresh_process():
    from pixdiff.eval.decode import peak_memory_mb

    def alloc():
        x = torch.ones(64, 1024, 1024)  # 256 MiB
        return float(x[0, 0, 0])

    alloc()  # a warm allocator must not hide the peak
    assert 250 < peak_memory_mb(alloc) < 300
    assert peak_memory_mb(lambda: None) < 30
