"""PiD: training pairs, the decoder's contract (shapes, seeds, padding, bad input), release round trip, learning."""
import json
from dataclasses import replace
import warnings

import pytest
import torch

from pixdiff.data.images import downsample
from pixdiff.decoder import PiD, PiDConfig, PiDDecoder, load_decoder, save_decoder
from pixdiff.errors import InputError
from pixdiff.latents import load_latent_source
from pixdiff.nn.pixel_dit import PRESETS
from pixdiff.train.pid import TRAIN_PRESETS, PiDTask, aux_rgb_loss, ycbcr

PIX4 = {"name": "pixels-f4", "channels": 48, "factor": 4}


def tiny_decoder(seed=0, **kw) -> PiDDecoder:
    torch.manual_seed(seed)
    cfg = PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, adapter_hidden=8, adapter_blocks=1, **kw)
    model = PiD(cfg)
    with torch.no_grad():  # open the zero-initialised output paths so outputs depend on everything
        for p in model.parameters():
            if p.ndim > 1 and float(p.abs().max()) == 0:
                p.normal_(std=0.05)
    return PiDDecoder(model, "tiny")


def test_decode_shape_and_seeding():
    dec = tiny_decoder()
    z = load_latent_source("pixels-f4").encode(torch.rand(2, 3, 8, 12) * 2 - 1)  # (2, 48, 2, 3)
    a = dec.decode(z, steps=3, generator=torch.Generator().manual_seed(1))
    b = dec.decode(z, steps=3, generator=torch.Generator().manual_seed(1))
    c = dec.decode(z, steps=3, generator=torch.Generator().manual_seed(2))
    assert a.shape == (2, 3, 32, 48)  # latent cells x factor 4 x scale 4
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.abs().max()) <= 1.0


def test_output_depends_on_latent_and_sigma():
    dec = tiny_decoder()
    z = torch.randn(1, 48, 2, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base = dec.decode(z, steps=2, generator=g())
    assert not torch.equal(base, dec.decode(torch.randn(1, 48, 2, 2), steps=2, generator=g()))
    assert not torch.equal(base, dec.decode(z, sigma=0.5, steps=2, generator=g()))


def test_latent_grid_not_a_whole_number_of_patches_is_padded_and_cropped_back():
    # scale 1 with factor 4 and patch 8: two latent cells per patch side, so an odd grid needs padding
    torch.manual_seed(0)
    model = PiD(PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, scale=1, adapter_hidden=8, adapter_blocks=1))
    dec = PiDDecoder(model, "tiny-1x")
    with pytest.warns(UserWarning, match="padded to 4x4"):
        y = dec.decode(torch.randn(1, 48, 3, 3), steps=1)
    assert y.shape == (1, 3, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dec.decode(torch.randn(1, 48, 2, 4), steps=1).shape == (1, 3, 8, 16)


def test_bad_input_is_refused_with_clear_errors():
    dec = tiny_decoder()
    z = torch.randn(1, 48, 2, 2)
    with pytest.raises(InputError, match="16 channels but pixels-f4 latents have 48"):
        dec.decode(torch.randn(1, 16, 2, 2))
    bad = z.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN or Inf"):
        dec.decode(bad)
    with pytest.raises(InputError, match="decodes at 4x only; scale 2"):
        dec.decode(z, scale=2)
    with pytest.raises(InputError, match=r"sigma must be in \[0, 1\]"):
        dec.decode(z, sigma=1.5)
    with pytest.raises(InputError, match="look like another latent space"):
        dec.decode(z * 20)  # same channels, wrong statistics (e.g. unnormalised latents)


def test_release_round_trip_and_damaged_files(tmp_path):
    dec = tiny_decoder()
    folder = save_decoder(dec.model, tmp_path / "d")
    z = torch.randn(1, 48, 2, 2)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    loaded = load_decoder(folder)
    # fp16 release weights: equal up to half-precision rounding
    assert torch.allclose(loaded.decode(z, steps=2, generator=g()), dec.decode(z, steps=2, generator=g()), atol=2e-2)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "net": {**cfg["net"], "dim": 48}}))
    with pytest.raises(InputError, match="do not match their config.json"):
        load_decoder(folder)
    (folder / "config.json").write_text(json.dumps({**cfg, "kind": "vae"}))
    with pytest.raises(InputError, match="not a pid-decoder"):
        load_decoder(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt"):
        load_decoder(folder)
    with pytest.raises(InputError, match="no decoder 'nope'"):
        load_decoder("nope")


def test_regression_objective_is_one_deterministic_call():
    dec = tiny_decoder(objective="l1")
    calls = []
    dec.model.net.register_forward_hook(lambda *a: calls.append(1))
    z = torch.randn(1, 48, 2, 2)
    a, b = dec.decode(z, steps=25), dec.decode(z, steps=25, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and len(calls) == 2


def test_ycbcr_and_aux_loss():
    grey = torch.full((1, 3, 2, 2), 0.2)
    assert torch.allclose(ycbcr(grey)[:, 1:], torch.zeros(1, 2, 2, 2), atol=1e-6)
    assert torch.allclose(ycbcr(grey)[:, 0], torch.full((1, 2, 2), 0.6))
    x = torch.rand(3, 3, 4, 4)
    assert float(aux_rgb_loss(x, x, torch.ones(3))) == pytest.approx(0.0, abs=1e-7)
    y = x + 0.5
    w = torch.tensor([1.0, 0.0, 0.0])  # only the first sample counts
    assert float(aux_rgb_loss(y, x, w)) == pytest.approx(float(aux_rgb_loss(y[:1], x[:1], torch.ones(1))))


@pytest.fixture(scope="module")
def pix_task(photos):
    cfg, _ = TRAIN_PRESETS["tiny"]
    return PiDTask(cfg, load_latent_source("pixels-f4"), [photos / "val"])


def test_training_pairs(pix_task):
    n = 400
    b = pix_task.batch(n, torch.Generator().manual_seed(0))
    assert b["hq"].shape == (n, 3, 64, 64) and b["lq"].shape == (n, 3, 16, 16)
    assert torch.allclose(b["lq"], downsample(b["hq"], 4))
    clean = pix_task.source.encode(b["lq"])
    s = b["sigma"]
    assert torch.equal(b["z"][s == 0], clean[s == 0])  # un-noised latents are the encoding itself
    assert float(s.max()) <= 0.8 and 0.68 < float((s > 0).float().mean()) < 0.82  # p = 0.75, U[0, 0.8]
    assert 0.06 < float((~b["keep"]).float().mean()) < 0.14  # 10% latent dropout
    i = int(torch.nonzero(s > 0.3)[0])
    assert not torch.allclose(b["z"][i], clean[i])


def test_loss_falls_when_fitting_one_batch(pix_task):
    model = pix_task.model
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    b = pix_task.batch(4, torch.Generator().manual_seed(0))

    def loss():  # the same t and noise every time
        return pix_task.loss(model, b, torch.Generator().manual_seed(1))[0]
    start = float(loss().detach())
    for _ in range(60):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.6 * start


def test_rgb_condition_is_the_upsampled_aux_estimate_faded_by_sigma():
    from dataclasses import replace

    torch.manual_seed(0)
    model = PiD(PiDConfig(net=replace(PRESETS["tiny"], cond_channels=3), latent_source=PIX4, adapter_hidden=8,
                          adapter_blocks=1))
    z = torch.randn(3, 48, 2, 2)
    sigma, keep = torch.tensor([0.0, 0.4, 0.0]), torch.tensor([True, True, False])
    with torch.no_grad():
        _, lq = model.latent_branch(z)  # (3, 3, 8, 8)
        c = model.rgb_condition(lq, sigma, keep, (32, 32))
        rgb = torch.nn.functional.interpolate(lq, size=(32, 32), mode="bicubic")
    assert c.shape == (3, 3, 32, 32)
    assert torch.allclose(c[0], rgb[0], atol=1e-6)  # clean latent: the estimate itself
    g = torch.sigmoid(torch.tensor(2 - 5 * 0.4)) / torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(c[1], g * rgb[1], atol=1e-6)  # sigma 0.4: faded to about 57%
    assert float(c[2].abs().max()) == 0  # dropped latent: nothing
    with pytest.raises(ValueError, match="cond_channels 3, aux_rgb"):
        PiD(PiDConfig(net=replace(PRESETS["tiny"], cond_channels=3), latent_source=PIX4, aux_rgb=False))


def test_caption_conditioning_trains_and_decodes_with_text_only_guidance(photos, tmp_path):
    import shutil

    from pixdiff.data.images import list_images

    folder = tmp_path / "captioned"
    folder.mkdir()
    for i, p in enumerate(list_images(photos / "val")[:3]):
        shutil.copy(p, folder / p.name)
        (folder / p.name).with_suffix(".txt").write_text(["a cup of coffee", "a butterfly", ""][i])
    cfg, _ = TRAIN_PRESETS["tiny-text"]
    task = PiDTask(cfg, load_latent_source("pixels-f4"), [folder])
    b = task.batch(64, torch.Generator().manual_seed(0))
    assert b["text"].shape == (64, 384)
    empty = task._pooled[""]
    assert 0.05 < float((b["text"] == empty).all(1).float().mean()) < 0.6  # dropout + the uncaptioned photo
    loss, _ = task.loss(task.model, {k: v[:2] if v is not None else v for k, v in b.items()},
                        torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    with torch.no_grad():  # open the zero-initialised text path so prompts matter
        task.model.net.text_embed[-1].weight.normal_(std=0.5)
        task.model.net.final.weight.normal_(std=0.1)
        for blk in task.model.net.pixel_blocks:  # the patch condition (which carries the text) reaches pixels here
            blk.ada[-1].weight.normal_(std=0.05)
    dec = PiDDecoder(task.model, "captioned")
    z = torch.randn(1, 48, 2, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = dec.decode(z, steps=2, generator=g(), prompt="a butterfly")
    assert not torch.equal(a, dec.decode(z, steps=2, generator=g(), prompt="a cup of coffee"))
    assert not torch.equal(a, dec.decode(z, steps=2, generator=g(), prompt="a butterfly", guidance=3.0))
    with pytest.raises(InputError, match="trained without captions"):
        tiny_decoder().decode(z, prompt="a butterfly")
    with pytest.raises(InputError, match="needs captions"):
        PiDTask(cfg, load_latent_source("pixels-f4"), [photos / "val"])


def test_x0_prediction_returns_the_velocity_of_the_predicted_image():
    torch.manual_seed(0)
    model = PiD(PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, adapter_hidden=8, adapter_blocks=1,
                          prediction="x0"))
    x, z = torch.randn(2, 3, 32, 32), torch.randn(2, 48, 2, 2)
    t, sigma = torch.tensor([0.5, 0.01]), torch.zeros(2)
    with torch.no_grad():
        v = model(x, t, z, sigma)  # zero-initialised output: x0 = 0, so v = x_t / max(t, 0.05)
    assert torch.allclose(v[0], x[0] / 0.5) and torch.allclose(v[1], x[1] / 0.05)
    with pytest.raises(ValueError, match="prediction must be"):
        PiD(PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, prediction="eps"))


def test_residual_model_starts_by_decoding_to_the_upsampled_estimate():
    """Zero output layer + residual: x0 = the RGB condition, so one Euler step from t = 1 lands on it exactly."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = PiD(PiDConfig(net=replace(PRESETS["tiny"], cond_channels=3), latent_source=PIX4, adapter_hidden=8,
                          adapter_blocks=1, prediction="x0", residual=True, rgb_head="decoder"))
    z = torch.randn(2, 48, 2, 2)
    with torch.no_grad():
        cond = model.rgb_condition(model.latent_branch(z)[1], torch.zeros(2), None, (32, 32))
    out = PiDDecoder(model, "r").decode(z, steps=1, generator=torch.Generator().manual_seed(0), back_projection=0)
    assert torch.allclose(out, cond.clamp(-1, 1), atol=1e-5)
    with pytest.raises(ValueError, match="residual adds"):
        PiD(PiDConfig(net=replace(PRESETS["tiny"], cond_channels=3), latent_source=PIX4, residual=True))


def test_decoder_head_initialised_from_the_vae_reproduces_its_decode():
    from pixdiff.nn.lq_decoder import LQDecoder, init_from_vae

    vae = load_latent_source("vae-f8c16")
    head = LQDecoder(16, 8)
    copied = init_from_vae(head, vae)
    assert len(copied) == len(head.state_dict())  # every tensor, normalisation folded into latent_in
    z = vae.encode(torch.rand(1, 3, 32, 48) * 2 - 1)  # (1, 16, 4, 6)
    with torch.no_grad():
        assert torch.allclose(head(z).clamp(-1, 1), vae.decode(z), atol=2e-3)
    other = LQDecoder(32, 8)  # taef2's channel count: all but the input layers
    new = set(other.state_dict()) - {c.split(" ")[0] for c in init_from_vae(other, vae)}
    assert new == {"latent_in.weight", "latent_in.bias", "decoder.conv_in.weight"}
    with pytest.raises(ValueError, match="factor of 2, 4 or 8"):
        LQDecoder(16, 3)
    with pytest.raises(ValueError, match="AutoencoderKL"):
        init_from_vae(head, load_latent_source("pixels-f4"))


def test_sigma_aware_decoder_head_keeps_the_vaes_decoder_for_clean_latents(tmp_path, capsys):
    from pixdiff.cli.main import main
    from pixdiff.nn.lq_decoder import LQDecoder, init_from_vae

    vae = load_latent_source("vae-f8c16")
    head = LQDecoder(16, 8, sigma_aware=True)
    assert len(init_from_vae(head, vae)) == len(head.state_dict())  # both copies from the VAE
    with torch.no_grad():
        next(head.decoder.parameters()).add_(0.05)  # the copy for noisy latents, as if fine-tuned
        z = vae.encode(torch.rand(3, 3, 32, 32) * 2 - 1)
        out = head(z, torch.tensor([0.0, 0.3, 0.0]))
        assert torch.allclose(out[[0, 2]].clamp(-1, 1), vae.decode(z[[0, 2]]), atol=2e-3)  # clean: the VAE's decoder
        assert torch.allclose(out[1], head.decoder(head.latent_in(z[1:2]))[0], atol=1e-5)
        assert not torch.allclose(out[1].clamp(-1, 1), vae.decode(z[1:2])[0], atol=2e-3)
        assert torch.equal(head(z), head(z, torch.zeros(3)))  # no sigma: clean latents
    assert not any(p.requires_grad for p in head.clean.parameters())
    assert all(p.requires_grad for n, p in head.named_parameters() if not n.startswith("clean."))
    # the clean copy must be the source's decoder
    args = ["train", "pid", "--out", str(tmp_path / "o"), "--dry-run", "--lq-head", "decoder-sigma",
            "--preset", "small"]
    assert main([*args, "--source", "taef2"]) == 2
    assert "--lq-head decoder-sigma keeps vae-f8c16's decoder for clean latents: it needs --source vae-f8c16, not " \
           "taef2 (for taef2: --lq-head taef2-sigma)" in capsys.readouterr().err
    assert main([*args, "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["model_config"]
    assert (cfg["rgb_head"], cfg["rgb_init"]) == ("decoder-sigma", "vae-f8c16")


def test_identity_head_needs_a_decoded_image():
    from pixdiff.nn.latent_adapter import LatentAdapter

    a = LatentAdapter(3, 1, 4, 16, 32, 2, hidden=8, aux_rgb=True, rgb_head="identity")
    x = torch.randn(1, 3, 4, 4)
    assert torch.equal(a.aux_rgb(x, a.trunk_map(x)), x)
    with pytest.raises(ValueError, match="decoded image"):
        LatentAdapter(16, 8, 4, 16, 32, 2, aux_rgb=True, rgb_head="identity")


def test_temperature_scales_the_starting_noise():
    """An untrained velocity model (zero output layer) leaves the starting noise as it is: the output is that noise."""
    dec = PiDDecoder(PiD(PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, adapter_hidden=8, adapter_blocks=1)), "t")
    z = torch.randn(1, 48, 2, 2)
    out = dec.decode(z, steps=2, generator=torch.Generator().manual_seed(0), temperature=0.5, back_projection=0)
    noise = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, (0.5 * noise).clamp(-1, 1))
    with pytest.raises(InputError, match="temperature must be"):
        dec.decode(z, temperature=0)


def test_latent_guidance_zero_is_the_unconditional_model():
    dec = tiny_decoder()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    z1, z2 = torch.randn(1, 48, 2, 2), torch.randn(1, 48, 2, 2)
    u1 = dec.decode(z1, steps=2, generator=g(), latent_guidance=0.0, back_projection=0)  # (projection reads z)
    assert torch.allclose(u1, dec.decode(z2, steps=2, generator=g(), latent_guidance=0.0, back_projection=0), atol=1e-6)
    assert not torch.allclose(u1, dec.decode(z1, steps=2, generator=g(), back_projection=0), atol=1e-3)
    assert torch.equal(dec.decode(z1, steps=2, generator=g(), latent_guidance=1.0), dec.decode(z1, steps=2, generator=g()))


def test_configure_sets_the_releases_sampling_defaults_and_keeps_its_weights(tmp_path, capsys):
    """`pixdiff configure` records temperature and latent guidance; decode uses them when not given, and an
    argument still wins. An untrained velocity model returns its starting noise, temperature x noise."""
    from safetensors.torch import load_file

    from pixdiff.cli.main import main

    dec = PiDDecoder(PiD(PiDConfig(net=PRESETS["tiny"], latent_source=PIX4, adapter_hidden=8, adapter_blocks=1)), "t")
    src = save_decoder(dec.model, tmp_path / "src")
    assert main(["configure", str(src), "--temperature", "0.5", "--latent-guidance", "2", "--out",
                 str(tmp_path / "new"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["before"] == {"temperature": 1.0, "latent_guidance": 1.0}
    assert report["after"] == {"temperature": 0.5, "latent_guidance": 2.0}
    a, b = load_file(src / "model.safetensors"), load_file(tmp_path / "new" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    new = load_decoder(tmp_path / "new")
    assert new.sampling() == (0.5, 2.0) and load_decoder(src).sampling() == (1.0, 1.0)
    assert new.sampling(0.8, 1.0) == (0.8, 1.0) and new.sampling(text_guidance=True) == (0.5, 1.0)
    z, g = torch.randn(1, 48, 2, 2), lambda: torch.Generator().manual_seed(0)  # noqa: E731
    noise = torch.randn(1, 3, 32, 32, generator=g())
    assert torch.allclose(new.decode(z, steps=2, generator=g(), back_projection=0), (0.5 * noise).clamp(-1, 1))
    assert torch.allclose(new.decode(z, steps=2, generator=g(), temperature=1.0, back_projection=0), noise.clamp(-1, 1))
    for bad, err in ((["--out", str(tmp_path / "x")], "nothing to set: give --temperature and/or --latent-guidance"),
                     (["--temperature", "0", "--out", str(tmp_path / "x")], "temperature must be in (0, 1.5], got 0.0"),
                     (["--latent-guidance", "-1", "--out", str(tmp_path / "x")],
                      "latent guidance must be in [0, 10], got -1.0")):
        assert main(["configure", str(src), *bad]) == 2
        assert err in capsys.readouterr().err
    assert main(["configure", str(src), "--shift", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--shift does not apply to" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_back_projection_converges_to_the_lq_estimate_and_keeps_consistent_images():
    from pixdiff.decoder.pid import project

    x, lq = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    err = [float((downsample(project(x, lq, 4, k), 4) - lq).norm()) for k in (0, 1, 3, 10)]
    assert err[0] > err[1] > err[2] > err[3] and err[3] < 0.02 * err[0]  # a contraction towards down(x) = lq
    assert torch.equal(project(x, downsample(x, 4), 4, 3), x)  # already consistent: nothing to correct


def test_decode_with_back_projection():
    dec = tiny_decoder()
    z = torch.randn(1, 48, 2, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = dec.decode(z, steps=2, generator=g(), back_projection=0)
    projected = dec.decode(z, steps=2, generator=g())  # the default: one round
    assert torch.equal(projected, dec.decode(z, steps=2, generator=g(), back_projection=1))
    assert not torch.equal(projected, plain)
    with torch.no_grad():
        est = dec.model.latent_branch(z)[1].clamp(-1, 1)  # (1, 3, 8, 8): the LQ estimate
    gap = [float((downsample(dec.decode(z, steps=2, generator=g(), back_projection=k), 4) - est).abs().mean())
           for k in (0, 2)]
    assert gap[1] < 0.5 * gap[0]
    with pytest.raises(InputError, match="back_projection must be >= 0"):
        dec.decode(z, back_projection=-1)
    dec.model.adapter.aux = None
    with pytest.raises(InputError, match="no LQ estimate"):
        dec.decode(z, back_projection=1)


def test_init_from_released_weights_and_mismatched_architecture(pix_task, photos, tmp_path):
    import copy

    from pixdiff.cli.main import main

    pix_task.export(copy.deepcopy(pix_task.model), tmp_path / "w0")
    # a release with its own sampling defaults starts a run all the same (the run keeps the preset's defaults)
    assert main(["configure", str(tmp_path / "w0"), "--temperature", "0.5", "--out", str(tmp_path / "w")]) == 0
    cfg, _ = TRAIN_PRESETS["tiny"]
    torch.manual_seed(2)  # another initialisation, overwritten by --init
    task = PiDTask(cfg, load_latent_source("pixels-f4"), [photos / "val"], init=tmp_path / "w")
    released = load_decoder(tmp_path / "w").model.state_dict()
    for k, v in task.model.state_dict().items():
        assert torch.equal(v, released[k]), k
    assert task.model.cfg.temperature == 1.0
    other, _ = TRAIN_PRESETS["tiny-cascade"]
    with pytest.raises(InputError, match="architecture differs from this preset's in .*latent_source"):
        PiDTask(other, load_latent_source("pixels-f4"), [photos / "val"], init=tmp_path / "w")


def test_head_only_training_moves_only_the_lq_head_and_lowers_its_loss(photos):
    cfg, _ = TRAIN_PRESETS["tiny-head"]
    torch.manual_seed(0)
    task = PiDTask(cfg, load_latent_source("pixels-f4"), [photos / "val"])
    model, before = task.model, {k: v.clone() for k, v in task.model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    b = task.batch(4, torch.Generator().manual_seed(0))
    start = float(task.loss(model, b, torch.Generator())[0].detach())
    for _ in range(40):
        opt.zero_grad()
        loss, stats = task.loss(model, b, torch.Generator())
        loss.backward()
        opt.step()
    assert set(stats) == {"aux_rgb"} and float(loss.detach()) < 0.5 * start
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("adapter.aux.") for k in moved)  # the pixel DiT and the trunk stay put
    with pytest.raises(InputError, match="head_only trains the adapter's LQ estimate"):
        PiDTask(replace(TRAIN_PRESETS["tiny-cascade"][0], head_only=True), load_latent_source("pixels-f4"),
                [photos / "val"])


def test_shipped_baselines_are_the_cascade_and_the_regression_on_decoded_f8c16():
    """The README's eval decode table names (b) and (c) by shipped name: they must be what the names say."""
    from pixdiff.decoder import load_decoder

    cascade, regression = load_decoder("pid-f8c16-x4-cascade"), load_decoder("pid-f8c16-x4-regression")
    assert cascade.source["name"] == regression.source["name"] == "vae-f8c16-decoded"
    assert (cascade.model.cfg.objective, regression.model.cfg.objective) == ("flow", "l1")
    assert cascade.model.cfg.scale == regression.model.cfg.scale == 4


def test_taef2_head_starts_as_taef2s_decoder_and_swaps_in_under_init(taef2_dir, photos, tmp_path):
    import copy

    from pixdiff.nn.lq_decoder import TAEF2Head, init_from_taef2

    taef2 = load_latent_source("taef2", taef2_dir)
    head = TAEF2Head(32, 8)
    init_from_taef2(head, taef2)
    z = taef2.encode(torch.rand(2, 3, 32, 48) * 2 - 1)  # (2, 32, 4, 6)
    with torch.no_grad():
        assert torch.allclose(head(z).clamp(-1, 1), taef2.decode(z), atol=1e-5)  # the same decoder, trainable
    with pytest.raises(ValueError, match="needs TAEF2's latents"):
        TAEF2Head(16, 8)
    with pytest.raises(ValueError, match="needs the taef2 source"):
        init_from_taef2(head, load_latent_source("vae-f8c16"))
    # --lq-head taef2 --init <weights with the decoder head>: all but the head from the release, the head from TAEF2
    cfg, _ = TRAIN_PRESETS["tiny"]
    old = PiDTask(cfg, taef2, [photos / "val"])
    old.export(copy.deepcopy(old.model), tmp_path / "w")
    task = PiDTask(replace(cfg, rgb_head="taef2", rgb_init="taef2"), taef2, [photos / "val"], init=tmp_path / "w")
    released = load_decoder(tmp_path / "w").model.state_dict()
    mine = task.model.state_dict()
    outside_head = lambda sd: {k for k in sd if not k.startswith("adapter.aux.")}  # noqa: E731
    assert outside_head(released) == outside_head(mine)
    for k, v in mine.items():
        if k.startswith("adapter.aux.decoder."):
            assert torch.equal(v, taef2.decoder.state_dict()[k.removeprefix("adapter.aux.decoder.")]), k
        else:
            assert torch.equal(v, released[k]), k
    with pytest.raises(InputError, match="architecture differs from this preset's in .*latent_source"):
        PiDTask(replace(cfg, rgb_head="taef2", rgb_init="taef2"), taef2, [photos / "val"],
                init=_other_source_release(tmp_path, photos))


def _other_source_release(tmp_path, photos):
    import copy

    cfg, _ = TRAIN_PRESETS["tiny"]
    task = PiDTask(cfg, load_latent_source("pixels-f4"), [photos / "val"])
    task.export(copy.deepcopy(task.model), tmp_path / "pix")
    return tmp_path / "pix"


def test_lq_head_option_errors(tmp_path, capsys):
    from pixdiff.cli.main import main

    base = ["train", "pid", "--out", str(tmp_path / "o"), "--dry-run", "--lq-head", "taef2"]
    assert main([*base, "--preset", "tiny"]) == 2
    assert "--lq-head taef2 copies TAEF2's decoder: it needs --source taef2, not vae-f8c16" in capsys.readouterr().err
    assert main([*base, "--preset", "tiny-cascade", "--source", "taef2"]) == 2
    assert "--lq-head is for pid presets with a learned LQ head" in capsys.readouterr().err
    assert main([*base, "--preset", "tiny", "--source", "taef2", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["model_config"]
    assert (cfg["rgb_head"], cfg["rgb_init"]) == ("taef2", "taef2") and not (tmp_path / "o").exists()


def test_sigma_aware_taef2_head_keeps_taef2s_decoder_for_clean_latents(taef2_dir, photos, tmp_path):
    import copy

    from pixdiff.nn.lq_decoder import TAEF2Head, init_from_taef2

    taef2 = load_latent_source("taef2", taef2_dir)
    head = TAEF2Head(32, 8, sigma_aware=True)
    init_from_taef2(head, taef2)
    with torch.no_grad():
        next(head.decoder.parameters()).add_(0.05)  # the copy for noisy latents, as if fine-tuned
    z = taef2.encode(torch.rand(2, 3, 32, 32) * 2 - 1)
    with torch.no_grad():
        out = head(z, torch.tensor([0.0, 0.2]))
        assert torch.allclose(out[0].clamp(-1, 1), taef2.decode(z[:1])[0], atol=1e-5)  # clean: TAEF2's decoder
        assert torch.allclose(out[1], head.decoder(z[1:])[0] * 2 - 1) and not torch.allclose(out[0], out[1])
        assert torch.equal(head(z), head(z, torch.zeros(2)))  # no sigma: clean latents
    assert not any(p.requires_grad for p in head.clean.parameters())
    # taef2 -> taef2-sigma under --init: the fine-tuned decoder carries over, the clean copy is TAEF2's
    cfg, _ = TRAIN_PRESETS["tiny"]
    tuned = PiDTask(replace(cfg, rgb_head="taef2", rgb_init="taef2"), taef2, [photos / "val"])
    with torch.no_grad():
        next(tuned.model.adapter.aux.decoder.parameters()).add_(0.05)
    tuned.export(copy.deepcopy(tuned.model), tmp_path / "t")
    task = PiDTask(replace(cfg, rgb_head="taef2-sigma", rgb_init="taef2"), taef2, [photos / "val"],
                   init=tmp_path / "t")
    released = load_decoder(tmp_path / "t").model.state_dict()
    for k, v in task.model.state_dict().items():
        if k.startswith("adapter.aux.clean."):
            assert torch.equal(v, taef2.decoder.state_dict()[k.removeprefix("adapter.aux.clean.")]), k
        else:
            assert torch.equal(v, released[k]), k
