"""The pixel DiT: starts at zero velocity, any size that is a multiple of the patch, adapter wiring."""
import torch

from pixdiff.nn.latent_adapter import LatentAdapter
from pixdiff.nn.pixel_dit import PRESETS, PixelDiT


def tiny():
    torch.manual_seed(0)
    return PixelDiT(PRESETS["tiny"])


def test_zero_velocity_at_initialisation_any_size():
    net = tiny()
    for h, w in [(16, 16), (24, 40)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            v = net(x, torch.tensor([0.3, 0.9]))
        assert v.shape == x.shape and float(v.abs().max()) == 0.0


def test_fold_is_the_inverse_of_the_patch_split():
    # With the output layer set to copy the pixel embedding's input, the network reproduces its input exactly
    # when every residual branch is closed (AdaLN-zero): checks the unfold / regroup / fold bookkeeping.
    net = tiny()
    d = net.cfg.pixel_dim
    with torch.no_grad():
        net.pixel_embed.weight.zero_(), net.pixel_embed.bias.zero_(), net.pixel_pos.zero_()
        net.pixel_embed.weight[:3, :3] = torch.eye(3)
        net.final_norm = torch.nn.Identity()
        net.final.weight.zero_(), net.final.bias.zero_()
        net.final.weight[:, :3, 1, 1] = torch.eye(3)  # the 3x3 output conv copies channels 0-2
    x = torch.randn(1, 3, 24, 16)
    assert d >= 3 and torch.allclose(net(x, torch.tensor([0.5])), x, atol=1e-6)


def test_adapter_features_reach_the_output_and_gradients_flow():
    net = tiny()
    n_inject = len(net.injection_points) + 1
    ad = LatentAdapter(16, 8, 4, patch=net.cfg.patch, dim=net.cfg.dim, n_inject=n_inject, hidden=8, n_blocks=1)
    with torch.no_grad():
        for head in ad.heads:
            head.weight.normal_(std=0.1)
        net.final.weight.normal_(std=0.1)
        for blk in net.pixel_blocks:
            blk.ada[-1].weight.normal_(std=0.1)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.5, 0.5])
    z = torch.randn(2, 16, 1, 1)
    out_a = net(x, t, ad, ad.features(z), torch.zeros(2))
    out_b = net(x, t, ad, ad.features(torch.randn(2, 16, 1, 1)), torch.zeros(2))
    assert not torch.allclose(out_a, out_b)
    out_a.square().mean().backward()
    assert ad.trunk[0].weight.grad is not None and float(ad.trunk[0].weight.grad.abs().sum()) > 0


def test_small_preset_with_its_adapter_fits_the_weight_budget():
    from pixdiff.decoder import PiD, PiDConfig

    n = sum(p.numel() for p in PiD(PiDConfig()).parameters())
    assert n * 2 < 25e6  # fp16 bytes per shipped file


def test_conditioning_image_reaches_the_output():
    from dataclasses import replace

    torch.manual_seed(0)
    net = PixelDiT(replace(PRESETS["tiny"], cond_channels=3))
    with torch.no_grad():
        net.final.weight.normal_(std=0.1)
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([0.5])
    a, b = net(x, t, cond=torch.zeros(1, 3, 16, 16)), net(x, t, cond=torch.ones(1, 3, 16, 16))
    assert not torch.allclose(a, b)
