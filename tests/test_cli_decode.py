"""PiD on the command line: train -> upscale / encode -> decode / eval decode, and their errors."""
import json

import numpy as np
import pytest
from PIL import Image

from pixdiff.cli.main import main


@pytest.fixture(scope="module")
def decoder(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("pid")
    assert main(["train", "pid", "--preset", "tiny", "--source", "pixels-f4", "--data", str(photos / "val"),
                 "--out", str(out), "--no-progress"]) == 0
    return out / "weights"


def write_png(path, w, h, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_upscale_pads_odd_sizes_and_crops_back(decoder, tmp_path, capsys):
    img = write_png(tmp_path / "odd.png", 18, 13)
    args = ["upscale", str(img), "--decoder", str(decoder), "--steps", "2", "--out", str(tmp_path / "o")]
    assert main(args + ["--json"]) == 0
    cap = capsys.readouterr()
    assert "edge-padded to 20x16" in cap.err
    res = json.loads(cap.out)
    assert Image.open(res["images"][0]["output"]).size == (72, 52)
    assert main(args + ["--seed", "0"]) == 0  # the same seed gives the same image
    first = np.asarray(Image.open(tmp_path / "o" / "odd.png"))
    assert main(args + ["--seed", "0"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "o" / "odd.png")))
    assert main(args + ["--scale", "2"]) == 2
    assert "upscales 4x only; --scale 2" in capsys.readouterr().err


def test_encode_then_decode_and_source_mismatch(decoder, tmp_path, capsys):
    img = write_png(tmp_path / "a.png", 16, 8)
    assert main(["encode", str(img), "--source", "pixels-f4", "--out", str(tmp_path / "z")]) == 0
    z = tmp_path / "z" / "a.safetensors"
    assert main(["decode", str(z), "--decoder", str(decoder), "--steps", "2", "--sigma", "0.2",
                 "--out", str(tmp_path / "d")]) == 0
    assert Image.open(tmp_path / "d" / "a.png").size == (64, 32)
    capsys.readouterr()
    assert main(["encode", str(img), "--source", "pixels-f2", "--out", str(tmp_path / "z2")]) == 0
    assert main(["decode", str(tmp_path / "z2" / "a.safetensors"), "--decoder", str(decoder),
                 "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err  # the decoder is named after its run folder
    assert f"holds latents of 'pixels-f2', but {decoder.parent.name} decodes 'pixels-f4'" in err
    assert main(["decode", str(img), "--decoder", str(decoder), "--out", str(tmp_path / "d")]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_eval_decode_writes_every_metric(decoder, photos, taef2_dir, tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["eval", "decode", "--decoder", str(decoder), "--data", str(photos / "val"), "--size", "64",
                 "--steps", "1", "--sigmas", "0.2", "--taef2", str(taef2_dir), "--sheet", str(tmp_path / "s.png"),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "| (d) PiD |" in out and "| truth |" in out
    r = json.loads(js.read_text())
    assert list(r["methods"]) == ["(a) decode + bicubic", "(d) PiD's LQ estimate + bicubic", "(d) PiD",
                                  "(d) PiD, sigma=0.2"]
    assert r["methods"]["(d) PiD's LQ estimate + bicubic"]["nfe"] == 0
    a = r["methods"]["(a) decode + bicubic"]
    assert a["nfe"] == 0 and r["methods"]["(d) PiD"]["nfe"] == 1
    # pixels-f4 is lossless: (a) is exactly bicubic of the LQ image, which the bicubic down-sampler nearly inverts
    assert a["lq_psnr"] > 35
    assert {"psnr", "ssim", "lq_ciede2000", "frechet", "hf_log2_distance", "hf_correlation", "blockiness",
            "seconds_per_image", "peak_memory_mb"} <= set(a)
    assert r["n"] == 12 and 0.8 < r["truth"]["blockiness"] < 1.2
    # the reference row upsamples the real LQ image; a lossless source's decode is that image, so they agree
    (ref,) = r["reference"].values()
    assert "| real LQ + bicubic" in out
    for k in ("psnr", "lq_psnr", "hf_correlation", "hf_log2_distance", "frechet"):
        assert abs(ref[k] - a[k]) <= 0.01 * max(1.0, abs(a[k])), k
    assert (tmp_path / "s.png").exists()


def test_a_training_run_folder_decodes_with_its_current_ema(decoder):
    import torch

    from pixdiff.decoder import load_decoder

    run = load_decoder(decoder.parent)  # the run folder: state.pt + its training config
    release = load_decoder(decoder)
    assert run.name.endswith("@20")
    z = torch.randn(1, 48, 2, 2)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.allclose(run.decode(z, steps=2, generator=g()), release.decode(z, steps=2, generator=g()), atol=2e-2)
