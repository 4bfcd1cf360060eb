"""L2P transfer on tiny random configs of two diffusers families: what is copied, new, dropped and frozen."""
import pytest
import torch
from diffusers import SD3Transformer2DModel

from pixdiff.errors import InputError
from pixdiff.ldm.zimage import build_zimage
from pixdiff.nn.detailer import DetailerHead
from pixdiff.transfer.student import head_channels, transfer


def zimage():
    torch.manual_seed(0)
    return build_zimage("tiny", 16, 384)


def sd3():
    torch.manual_seed(0)
    return SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=4, attention_head_dim=8,
                                 num_attention_heads=2, joint_attention_dim=384, caption_projection_dim=16,
                                 pooled_projection_dim=384, out_channels=16, pos_embed_max_size=16)


@pytest.mark.parametrize("make,n_blocks_attr,embed,final", [
    (zimage, "layers", "all_x_embedder.16-1.", "all_final_layer.2-1."),
    (sd3, "transformer_blocks", "pos_embed.proj.weight", "proj_out."),
])
def test_copied_tensors_are_identical_and_only_the_patch_embedding_and_head_are_new(make, n_blocks_attr, embed, final):
    src = make()
    student, rep = transfer(src, vae_factor=8, n_train=1)
    assert rep.patch == 16
    src_sd, st_sd = src.state_dict(), student.transformer.state_dict()
    assert rep.copied and all(torch.equal(src_sd[n], st_sd[n]) for n in rep.copied)
    new_in_transformer = [n for n in rep.new if not n.startswith("head.")]
    assert new_in_transformer and all(n.startswith(embed) for n in new_in_transformer)
    assert any(n.startswith(final) for n in rep.removed)  # the final projection is gone
    blocks = getattr(student.transformer, n_blocks_attr)
    for i, block in enumerate(blocks):
        trainable = all(p.requires_grad for p in block.parameters())
        assert trainable == (i < 1 or i >= len(blocks) - 1)  # middle blocks frozen
    assert rep.params["trainable"] + rep.params["frozen"] == rep.params["total"]
    assert "tensors copied" in rep.summary()


@pytest.mark.parametrize("make", [zimage, sd3])
def test_student_keeps_the_token_grid_and_starts_at_zero_velocity(make):
    student, _ = transfer(make(), vae_factor=8, n_train=1)
    x = torch.randn(2, 3, 64, 64)
    seen = {}
    student.head.fuse.register_forward_hook(lambda m, a, o: seen.update(grid=a[0].shape[-2:]))
    v = student(x, torch.tensor([0.3, 0.8]), [torch.randn(3, 384), torch.randn(5, 384)])
    assert v.shape == x.shape and float(v.detach().abs().max()) == 0  # zero-initialised head output
    assert tuple(seen["grid"]) == (4, 4)  # 64 px / 16 = the source's 32 / 8 latent cells / 2 per token


def test_gradients_reach_shallow_blocks_but_not_frozen_ones():
    student, _ = transfer(sd3(), vae_factor=8, n_train=1)
    torch.nn.init.normal_(student.head.out.weight, std=0.1)
    v = student(torch.randn(1, 3, 32, 32), torch.tensor([0.5]), [torch.randn(2, 384)])
    v.square().mean().backward()
    blocks = student.transformer.transformer_blocks
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in blocks[0].parameters())
    assert all(p.grad is None for p in blocks[1].parameters())


def test_unsupported_family_and_mismatched_patch_are_refused():
    class Other(torch.nn.Module):
        pass

    with pytest.raises(InputError, match="does not know the Other family"):
        transfer(Other(), vae_factor=8, n_train=1)
    with pytest.raises(InputError, match="patch of 8 does not match the source: VAE factor 8 x latent patch 2 = 16"):
        transfer(zimage(), vae_factor=8, n_train=1, patch=8)
    with pytest.raises(InputError, match="n = 3 shallow blocks"):
        transfer(zimage(), vae_factor=8, n_train=3)


def test_head_channels_and_detailer_shapes():
    assert head_channels(16) == (16, 32, 64, 128) and head_channels(32) == (8, 16, 32, 64, 128)
    with pytest.raises(InputError, match="power-of-two"):
        head_channels(24)
    head = DetailerHead(12, (8, 16))
    assert head.patch == 4
    assert head(torch.randn(1, 3, 16, 16), torch.randn(1, 12, 4, 4)).shape == (1, 3, 16, 16)


def test_linear_head_ablation_unpatchifies_each_token():
    from pixdiff.nn.detailer import LinearHead

    student, rep = transfer(zimage(), vae_factor=8, n_train=1, head="linear")
    assert isinstance(student.head, LinearHead)
    head = LinearHead(2, 4)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.weight[0, 0] = 1.0  # red channel of pixel (0, 0) of each patch = token channel 0
    with torch.no_grad():
        y = head(torch.zeros(1, 3, 8, 8), torch.arange(8.0).view(1, 2, 2, 2))
    assert y[0, 0, 0, 0] == 0 and y[0, 0, 0, 4] == 1 and y[0, 0, 4, 0] == 2 and float(y[0, 1:].abs().sum()) == 0


@pytest.mark.parametrize("make", [zimage, sd3])
def test_growing_doubles_the_patch_keeps_the_grid_and_embeds_like_the_pooled_image(make):
    from pixdiff.transfer.student import grow_student

    student, _ = transfer(make(), vae_factor=8, n_train=1)
    with torch.no_grad():
        for p in student.head.parameters():
            p.normal_(std=0.05)
    big, rep = grow_student(student, 2)
    assert big.patch == 32 and big.head.patch == 32 and len(big.head.channels) == 5
    assert any("grown from" in n for n in rep.copied) and any(n.startswith("head.up.0") for n in rep.copied)
    x = torch.randn(1, 3, 32, 32)
    up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)  # 64 x 64, same content
    fam = student.family
    seen = {}
    def grab(m, a, o, key):
        seen[key] = o.detach().clone()
    k_small, k_big = fam.patch_embed_key(student.transformer), fam.patch_embed_key(big.transformer)
    student.transformer.get_submodule(k_small).register_forward_hook(lambda m, a, o: grab(m, a, o, "small"))
    big.transformer.get_submodule(k_big).register_forward_hook(lambda m, a, o: grab(m, a, o, "big"))
    t, caps = torch.tensor([0.5]), [torch.randn(3, 384)]
    with torch.no_grad():
        student(x, t, caps)
        big(up, t, caps)
    assert torch.allclose(seen["small"], seen["big"], atol=1e-5)  # the 2x image embeds to the same tokens
    frozen_small = [i for i, b in enumerate(fam.blocks(student.transformer)) if not next(b.parameters()).requires_grad]
    frozen_big = [i for i, b in enumerate(fam.blocks(big.transformer)) if not next(b.parameters()).requires_grad]
    assert frozen_small == frozen_big
    assert len(rep.frozen) == sum(1 for i in frozen_big for _ in fam.blocks(big.transformer)[i].parameters())


def test_x_prediction_turns_the_clean_image_into_the_velocity():
    x0, eps, t = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), torch.tensor([0.3, 0.9])
    tb = t.view(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    caps = [torch.randn(3, 384), torch.randn(5, 384)]
    student, _ = transfer(zimage(), vae_factor=8, n_train=1, prediction="x")
    with torch.no_grad():  # the zero-initialised head predicts x = 0: v = x_t / t, t clipped at 0.05
        assert torch.allclose(student(x_t, torch.tensor([0.3, 0.01]), caps), x_t / torch.tensor([0.3, 0.05]).view(
            -1, 1, 1, 1))
        student.head.register_forward_hook(lambda m, a, o: x0)  # an oracle head: the true clean image
        assert torch.allclose(student(x_t, t, caps), eps - x0, atol=1e-5)
    with pytest.raises(InputError, match="unknown prediction 'eps'"):
        transfer(zimage(), vae_factor=8, n_train=1, prediction="eps")


def smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images constant on 4 x 4 blocks: 48 of a 16-pixel patch's 768 values vary, so the rest is unused."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size // 4, size // 4, generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)


def test_alignment_fits_a_linear_encoder_and_keeps_white_noise_white():
    from pixdiff.transfer.embed import fit_alignment

    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(96, 12, generator=g))[0]  # images live in 12 of 96 pixel directions
    enc = 0.1 * torch.randn(8, 96, generator=g)  # a linear "VAE" to 8 latent values, gain on noise below 1
    x = torch.randn(4000, 12, generator=g) @ basis.T + 0.5
    al = fit_alignment(x, x @ enc.T + 1.0)
    assert al.subspace == 12 and al.r2 > 0.999
    x_new = torch.randn(100, 12, generator=g) @ basis.T + 0.5
    assert torch.allclose(x_new @ al.map.T + al.offset, x_new @ enc.T + 1.0, atol=1e-2)
    # white pixel noise -> white latent noise: M M^T = I (the encoder's own gain on noise would be enc enc^T)
    assert torch.allclose(al.map @ al.map.T, torch.eye(8), atol=1e-5) and abs(al.noise_gain - 1) < 1e-5
    with pytest.raises(InputError, match="at least 16 patches"):
        fit_alignment(x[:10], x[:10] @ enc.T)
    with pytest.raises(InputError, match="wider than latent"):
        fit_alignment(x[:, :8], x[:, :8])


@pytest.mark.parametrize("make", [zimage, sd3])
def test_latent_aligned_embedding_embeds_an_image_as_the_source_embeds_its_latent(make):
    """With a linear, patch-local stand-in for the VAE (a stride-8 conv), a student with the aligned embedding embeds
    each smooth image exactly as the source embeds that image's latent."""
    from pixdiff.transfer.embed import alignment_from_images

    src = make()
    conv = torch.nn.Conv2d(3, 16, 8, stride=8)
    with torch.no_grad():
        conv.weight.mul_(0.3)
    encode = lambda im: conv(im).detach()
    plain, _ = transfer(src, vae_factor=8, n_train=1)
    fam = plain.family
    al = alignment_from_images(smooth_images(64), encode, fam, 16, fam.latent_patch(dict(src.config)))
    student, rep = transfer(src, vae_factor=8, n_train=1, alignment=al)
    assert any("latent-aligned" in n for n in rep.copied) and not [n for n in rep.new if not n.startswith("head.")]
    embed_px = student.transformer.get_submodule(fam.patch_embed_key(student.transformer))
    embed_lat = src.get_submodule(fam.patch_embed_key(src))
    im = smooth_images(2, seed=5)

    def tokens(module, x, patch):  # (N, D) in patch_vectors' order, through the module's own forward
        if isinstance(module, torch.nn.Linear):
            return module(fam.patch_vectors(x, patch))
        return module(x).flatten(2).transpose(1, 2).reshape(-1, module.out_channels)

    with torch.no_grad():
        want = tokens(embed_lat, encode(im), 2)
        assert (tokens(embed_px, im, 16) - want).abs().max() < 3e-3  # the fit's ridge shrinks it by ~0.1%
        random_init = plain.transformer.get_submodule(fam.patch_embed_key(plain.transformer))
        assert (tokens(random_init, im, 16) - want).abs().max() > 0.3
    # a mismatched map is refused with the sizes named
    al.map = al.map[:, :100]
    with pytest.raises(InputError, match="this source and student need 768 -> 64"):
        transfer(src, vae_factor=8, n_train=1, alignment=al)


@pytest.mark.parametrize("family", ["ZImageTransformer2DModel", "SD3Transformer2DModel"])
def test_coupled_noise_is_white_and_embeds_as_the_latent_noise(family):
    """eps = M^+ z + (I - M^+ M) xi, patch by patch: as a linear map of (z, xi) it is an isometry A A^T = I when
    M M^T = I (so eps ~ N(0, I)), and M reads every patch of eps as the latent noise z, for any full-rank M."""
    from pixdiff.transfer.embed import couple_noise
    from pixdiff.transfer.families import FAMILIES

    fam, g = FAMILIES[family], torch.Generator().manual_seed(0)
    dl, dp = 4 * 2 * 2, 3 * 8 * 8  # latent patch 2 of 4 channels, pixel patch 8
    m = torch.linalg.qr(torch.randn(dp, dl, generator=g, dtype=torch.float64))[0].T.float()  # (dl, dp), M M^T = I
    assert torch.equal(fam.from_patch_vectors(fam.patch_vectors(torch.arange(2 * 3 * 16 * 16.).view(2, 3, 16, 16),
                                                                 8), 8, (2, 3, 16, 16)),
                       torch.arange(2 * 3 * 16 * 16.).view(2, 3, 16, 16))  # the inverse of patch_vectors
    cols = [couple_noise(e.view(1, 4, 2, 2), torch.zeros(1, 3, 8, 8), m, fam, 8).flatten() for e in torch.eye(dl)]
    cols += [couple_noise(torch.zeros(1, 4, 2, 2), e.view(1, 3, 8, 8), m, fam, 8).flatten() for e in torch.eye(dp)]
    a = torch.stack(cols, 1).double()  # (dp, dl + dp)
    assert torch.allclose(a @ a.T, torch.eye(dp, dtype=torch.float64), atol=1e-5)
    skewed = m + 0.3 * torch.randn(dl, dp, generator=g)  # not noise-matched: still read exactly
    for mm in (m, skewed):
        z, xi = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 3, 16, 16, generator=g)  # 2 x 2 patches
        eps = couple_noise(z, xi, mm, fam, 8)
        assert torch.allclose(fam.patch_vectors(eps, 8) @ mm.T, fam.patch_vectors(z, 2), atol=1e-4)
