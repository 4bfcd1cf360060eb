"""The command line: --help everywhere, --json, output naming, one-line errors with non-zero exit."""
import json

import numpy as np
import pytest
from PIL import Image

from pixdiff.cli.main import build_parser, main

SEEDED = ["roundtrip", "train", "upscale", "encode", "decode", "generate", "transfer", "synth", "demo"]
EVAL = [["eval", "decode"], ["eval", "l2p"]]  # seeded too
UNSEEDED = [["info"], ["configure"], ["bench", "generate"]]  # nothing random in them: no --seed to mislead
LONG = {"train", "upscale", "decode", "generate", "synth", "demo", "eval"}  # progress bars, and --no-progress


@pytest.mark.parametrize("cmd", [[c] for c in SEEDED] + EVAL + UNSEEDED)
def test_every_command_has_help_json_and_seed_where_it_draws(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--json" in out and ("--seed" in out) == (cmd in EVAL or cmd[0] in SEEDED)
    assert ("--no-progress" in out) == (cmd[0] in LONG)


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "vae-f8c16" in info["latent_sources"] and info["torch"]
    assert isinstance(info["cpu"]["native_bf16"], bool) and info["cpu"]["capability"]


def write(path, arr, mode=None):
    Image.fromarray(arr, mode).save(path)
    return path


def test_roundtrip_names_outputs_after_inputs_and_reports_conversions(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = write(tmp_path / "photo.png", rng.integers(0, 255, (20, 18, 3), dtype=np.uint8))
    b = write(tmp_path / "grey.jpg", rng.integers(0, 255, (16, 16), dtype=np.uint8), "L")
    assert main(["roundtrip", str(a), str(b), "--source", "pixels-f4", "--out", str(tmp_path / "out"), "--json"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert [r["output"] for r in res["images"]] == [str(tmp_path / "out" / "photo.png"), str(tmp_path / "out" / "grey.png")]
    assert "grey.jpg: converted L -> RGB" in cap.err
    assert "photo.png: centre-cropped to 16x20 (a multiple of 4)" in cap.err
    assert res["images"][0]["psnr"] == float("inf") or res["images"][0]["psnr"] > 90  # pixels: exact
    assert Image.open(tmp_path / "out" / "photo.png").size == (16, 20)


@pytest.mark.parametrize("setup,message", [
    (lambda d: d / "missing.png", "no such image"),
    (lambda d: (d / "bad.png").write_bytes(b"garbage") and d / "bad.png", "cannot read image"),
    (lambda d: write(d / "tiny.png", np.zeros((2, 2, 3), np.uint8)), "smaller than one latent cell"),
])
def test_roundtrip_bad_input_is_one_line_and_nonzero(tmp_path, capsys, setup, message):
    path = setup(tmp_path)
    code = main(["roundtrip", str(path), "--source", "pixels-f4", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_roundtrip_duplicate_stems_rejected(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    x = write(tmp_path / "a" / "x.png", np.zeros((8, 8, 3), np.uint8))
    y = write(tmp_path / "b" / "x.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["roundtrip", str(x), str(y), "--source", "pixels-f4", "--out", str(tmp_path / "o")]) == 2
    assert "would both be written as x.png" in capsys.readouterr().err


def test_unknown_source_is_an_error(tmp_path, capsys):
    x = write(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["roundtrip", str(x), "--source", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown latent source 'nope'" in capsys.readouterr().err


def test_train_dry_run_prints_resolved_config(tmp_path, capsys):
    assert main(["train", "vae", "--preset", "tiny", "--out", str(tmp_path), "--dry-run", "--json", "--steps", "3"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["optim"]["steps"] == 3 and cfg["model_config"]["preset"] == "tiny"
    assert not (tmp_path / "state.pt").exists()
    assert main(["train", "vae", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_parser_lists_all_commands():
    help_text = build_parser().format_help()
    assert all(c in help_text for c in SEEDED + ["info", "configure", "bench"])


def test_resume_accepts_options_added_since_when_they_keep_their_default(tmp_path):
    from pixdiff.cli.train import compatible_config
    from pixdiff.train.pid import PiDTrainConfig

    (tmp_path / "config.json").write_text(json.dumps({"model_config": {"net": "small"}}))
    new = {"model_config": {"net": "small", "prediction": "v", "text": False}}
    assert compatible_config(new, tmp_path, PiDTrainConfig())["model_config"] == {"net": "small"}
    changed = {"model_config": {"net": "small", "prediction": "x0"}}
    assert compatible_config(changed, tmp_path, PiDTrainConfig())["model_config"] == changed["model_config"]


def test_training_device_choice():
    import torch

    from pixdiff import InputError
    from pixdiff.cli.train import training_device

    gpu = "cuda" if torch.cuda.is_available() else "cpu"
    assert training_device("cpu", "pid") == "cpu" and training_device("auto", "vae") == "cpu"
    assert [training_device("auto", m) for m in ("pid", "ldm", "l2p")] == [gpu] * 3
    with pytest.raises(InputError, match="`train vae` runs on CPU only"):
        training_device("cuda", "vae")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            training_device("cuda", "l2p")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without GPU")
@pytest.mark.parametrize("args", [["generate", "--model", "ldm-shapes", "--prompt", "one red circle"],
                                  ["synth", "--teacher", "ldm-shapes", "--n", "1"],
                                  ["eval", "l2p", "--source", "ldm-shapes"]])
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, args):
    out = ["--out", str(tmp_path / "o")] if args[0] != "eval" else []
    assert main([*args, *out, "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.parametrize("fast", [True, False])
def test_precision_auto_uses_bf16_only_where_it_is_native(tmp_path, capsys, monkeypatch, fast):
    import pixdiff.train.loop as loop

    monkeypatch.setattr(loop, "bf16_is_fast", lambda device: fast)
    dry = ["train", "vae", "--preset", "tiny", "--out", str(tmp_path), "--dry-run", "--json"]
    assert main(dry) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["optim"]["bf16"] is fast  # the tiny preset asks for bf16
    assert ("precision: fp32 (this CPU has no native bf16" in out.err) is not fast
    for forced, want in (("bf16", True), ("fp32", False)):
        assert main([*dry, "--precision", forced]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)["optim"]["bf16"] is want and "precision:" not in out.err
