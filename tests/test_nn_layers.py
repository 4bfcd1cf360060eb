"""Transformer layers: RoPE is relative and resolution-normalised, attention is permutation-equivariant."""
import torch

from pixdiff.nn.layers import Attention, apply_rope, rope_2d, timestep_embedding


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_2d(4, 4, 16, span=3.0)  # spacing 1 on a 4x4 grid
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)
    rq = lambda i: apply_rope(q, cos[i : i + 1], sin[i : i + 1])  # noqa: E731
    rk = lambda i: apply_rope(k, cos[i : i + 1], sin[i : i + 1])  # noqa: E731
    score = lambda i, j: float((rq(i) * rk(j)).sum())  # noqa: E731
    # (0,0)->(1,1) and (2,2)->(3,3): same offset, same score; grid index = 4 * y + x
    assert abs(score(0, 5) - score(10, 15)) < 1e-5
    assert abs(score(0, 5) - score(0, 6)) > 1e-3
    assert torch.allclose(apply_rope(q, cos[:1], sin[:1]), q)  # position 0 is the identity


def test_rope_coordinates_span_is_fixed_across_resolutions():
    c8, s8 = rope_2d(8, 8, 16)
    c16, s16 = rope_2d(16, 16, 16)
    assert torch.allclose(c8[-1], c16[-1]) and torch.allclose(s8[0], s16[0])  # both corners at (16, 16) and (0, 0)


def test_attention_is_permutation_equivariant_without_rope():
    torch.manual_seed(0)
    att = Attention(32, 4)
    x = torch.randn(2, 10, 32)
    perm = torch.randperm(10)
    assert torch.allclose(att(x)[:, perm], att(x[:, perm]), atol=1e-5)


def test_timestep_embedding_shape_and_distinctness():
    e = timestep_embedding(torch.tensor([0.0, 0.5, 1.0]), 64)
    assert e.shape == (3, 64) and not torch.allclose(e[0], e[1])
