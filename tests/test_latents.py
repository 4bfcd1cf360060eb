"""Latent sources: normalisation conventions on tiny random diffusers configs, TAEF2 quality, bad input."""
import json

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderKLFlux2
from safetensors.torch import save_file

from pixdiff import InputError, load_latent_source
from pixdiff.latents.diffusers_vae import patchify

TINY = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def images(n=2, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(params=["sd", "flux1"])
def kl_folder(request, tmp_path):
    torch.manual_seed(0)
    if request.param == "sd":  # SD / SDXL: scaling only
        vae = AutoencoderKL(latent_channels=4, scaling_factor=0.18215, **TINY)
    else:  # SD3 / FLUX.1: shift and scale
        vae = AutoencoderKL(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, **TINY)
    vae.save_pretrained(tmp_path / "vae")
    return tmp_path / "vae", vae.eval()


def test_autoencoderkl_conventions(kl_folder):
    folder, vae = kl_folder
    src = load_latent_source(folder)
    cfg = vae.config
    assert src.factor == 2 and src.channels == cfg.latent_channels
    x = images()
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mode()
        expect = (raw - (cfg.shift_factor or 0.0)) * cfg.scaling_factor
        z = src.encode(x)
        assert torch.allclose(z, expect, atol=1e-5)
        assert torch.allclose(src.decode(z), vae.decode(raw).sample.clamp(-1, 1), atol=1e-5)


def test_single_safetensors_file_matches_folder(kl_folder, tmp_path):
    folder, vae = kl_folder
    single = tmp_path / "single"
    single.mkdir()
    save_file(vae.state_dict(), single / "vae.safetensors")
    (single / "config.json").write_text((folder / "config.json").read_text())
    x = images()
    assert torch.allclose(load_latent_source(single / "vae.safetensors").encode(x),
                          load_latent_source(folder).encode(x), atol=1e-6)
    (single / "config.json").unlink()
    with pytest.raises(InputError, match="no config.json"):
        load_latent_source(single / "vae.safetensors")


def test_pipeline_folder_finds_vae_subfolder(kl_folder, tmp_path):
    folder, _ = kl_folder
    assert load_latent_source(folder.parent).channels == load_latent_source(folder).channels


def test_flux2_batchnorm_and_patchify(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(latent_channels=4, **TINY).eval()
    vae.bn.running_mean.copy_(torch.randn(16))
    vae.bn.running_var.copy_(torch.rand(16) + 0.5)
    vae.save_pretrained(tmp_path / "flux2")
    src = load_latent_source(tmp_path / "flux2")
    assert src.factor == 4 and src.channels == 16  # 2x from the tiny VAE, 2x from patchify; 4 * 2 * 2 channels
    x = images()
    with torch.no_grad():
        raw = vae.encode(x).latent_dist.mode()
        p = patchify(raw)
        # the FLUX.2 pipeline's own patchify, written out
        b, c, h, w = raw.shape
        ref = raw.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        assert torch.equal(p, ref)
        expect = (p - vae.bn.running_mean.view(1, -1, 1, 1)) / (vae.bn.running_var.view(1, -1, 1, 1) + 1e-4).sqrt()
        z = src.encode(x)
        assert torch.allclose(z, expect, atol=1e-5)
        assert torch.allclose(src.decode(z), vae.decode(raw).sample.clamp(-1, 1), atol=1e-5)


def test_pixels_source_is_exact():
    src = load_latent_source("pixels-f4")
    x = images(size=16)
    z = src.encode(x)
    assert z.shape == (2, 48, 4, 4) and torch.equal(src.decode(z), x)
    assert load_latent_source("pixels").channels == 192


def test_bad_latents_and_images():
    src = load_latent_source("pixels-f4")
    with pytest.raises(InputError, match="48 channels.*different latent source|have 47 channels"):
        src.decode(torch.zeros(1, 47, 2, 2))
    bad = torch.zeros(1, 48, 2, 2)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="1 of 192 values are NaN or Inf"):
        src.decode(bad)
    with pytest.raises(InputError, match="smaller than one latent cell"):
        src.encode(torch.zeros(1, 3, 2, 8))
    with pytest.raises(InputError, match="not a multiple of the latent factor 4"):
        src.encode(torch.zeros(1, 3, 8, 10))


def test_unknown_and_unsupported_sources(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="unknown latent source 'nope'"):
        load_latent_source("nope")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(InputError, match="unsupported autoencoder class 'UNet2DModel'"):
        load_latent_source(tmp_path)
    monkeypatch.delenv("PIXDIFF_TAEF2", raising=False)
    with pytest.raises(InputError, match="taef2 needs its weights: pass --weights DIR"):
        load_latent_source("taef2")
    with pytest.raises(InputError, match="taef2_encoder.pth not found"):
        load_latent_source("taef2", weights=tmp_path)


def test_taef2_rejects_corrupt_weights(tmp_path, taef2_dir):
    for f in ("taef2_encoder.pth", "taef2_decoder.pth"):
        (tmp_path / f).write_bytes((taef2_dir / f).read_bytes()[:1000])
    with pytest.raises(InputError, match="sha256"):
        load_latent_source("taef2", weights=tmp_path)


def test_taef2_round_trip_quality(taef2_dir, photos):
    from pixdiff.data.crops import eval_crops
    from pixdiff.eval.metrics import psnr

    crops, _ = eval_crops(photos / "val", 256, per_image=1)  # one whole-scene crop per held-out photo
    src = load_latent_source("taef2", weights=taef2_dir)
    z = src.encode(crops)
    assert z.shape == (len(crops), 32, 32, 32)
    assert 0.6 < float(z.std()) < 1.1  # the README: std about 0.85 on photos
    assert float(psnr(src.decode(z), crops).mean()) >= 28.0
