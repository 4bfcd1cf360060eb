"""The sigma-aware latent adapter: alignment to the patch grid, zero-initialised heads, the gate's initial curve."""
import math

import pytest
import torch

from pixdiff.nn.latent_adapter import LatentAdapter


@pytest.mark.parametrize("factor,channels,scale,lq,tokens_side", [
    (8, 16, 4, 32, 8),    # f8 latent 4x4 -> 128 px output, 8x8 patches: nearest x2
    (16, 128, 4, 32, 8),  # FLUX.2-style f16: nearest x4
    (8, 16, 1, 64, 4),    # no upscaling: 8x8 latent folded 2x2 into channels
    (8, 32, 2, 64, 8),    # 2x: identity
])
def test_alignment_to_the_patch_grid(factor, channels, scale, lq, tokens_side):
    ad = LatentAdapter(channels, factor, scale, patch=16, dim=32, n_inject=2, hidden=16, n_blocks=1)
    z = torch.randn(2, channels, lq // factor, lq // factor)
    feats = ad.features(z)
    assert len(feats) == 2 and feats[0].shape == (2, tokens_side**2, 32)


def test_unalignable_factor_is_refused():
    with pytest.raises(ValueError, match="does not align"):
        LatentAdapter(16, 8, 3, patch=16, dim=32, n_inject=1)


def test_starts_as_a_no_op_with_the_documented_gate_curve():
    torch.manual_seed(0)
    ad = LatentAdapter(16, 8, 4, patch=16, dim=32, n_inject=3, hidden=16, n_blocks=1)
    z, h = torch.randn(4, 16, 4, 4), torch.randn(4, 64, 32)
    sigma = torch.tensor([0.0, 0.4, 0.8, 1.0])
    with torch.no_grad():
        feats = ad.features(z)
    assert all(float(f.abs().max()) == 0 for f in feats)
    assert torch.equal(ad.inject(0, h, feats[0], sigma), h)
    g = ad.gate(1, torch.zeros(4, 64, 32), torch.zeros(4, 64, 32), sigma)  # W [h; f] = 0: g = sigmoid(2 - 5 sigma)
    expect = torch.sigmoid(2 - 5 * sigma)
    assert torch.allclose(g[:, 0, 0], expect, atol=1e-6)
    assert float(expect[0]) == pytest.approx(0.881, abs=1e-3) and float(expect[1]) == pytest.approx(0.5)
    assert float(expect[3]) == pytest.approx(1 / (1 + math.exp(3)), abs=1e-6)


def test_gate_closes_with_sigma_after_training_too():
    torch.manual_seed(0)
    ad = LatentAdapter(16, 8, 4, patch=16, dim=8, n_inject=1, hidden=8, n_blocks=1)
    h, f = torch.randn(1, 4, 8).expand(5, 4, 8), torch.randn(1, 4, 8).expand(5, 4, 8)
    with torch.no_grad():
        g = ad.gate(0, h, f, torch.linspace(0, 1, 5)).mean((1, 2))
    assert bool((g[1:] < g[:-1]).all())
