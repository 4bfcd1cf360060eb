"""Release weights: safetensors folders, no unpickling by default, latent-source mismatch named."""
import os

import pytest
import torch

from pixdiff import InputError, load_latent_source
from pixdiff.release import check_latent_source, load_release, save_release, source_signature


def test_round_trip_in_fp16(tmp_path):
    sd = {"w": torch.randn(3, 4), "step": torch.tensor(7)}
    save_release(sd, {"kind": "toy", "width": 4}, tmp_path / "m")
    cfg, loaded = load_release(tmp_path / "m", kind="toy")
    assert cfg == {"kind": "toy", "width": 4}
    assert loaded["w"].dtype == torch.float16 and torch.allclose(loaded["w"].float(), sd["w"], atol=2e-3)
    assert loaded["step"].dtype == torch.int64 and int(loaded["step"]) == 7
    with pytest.raises(InputError, match="holds a toy model, not a pid-decoder"):
        load_release(tmp_path / "m", kind="pid-decoder")


def test_weights_get_the_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        save_release({"w": torch.zeros(2)}, {"kind": "toy"}, tmp_path / "m")
    finally:
        os.umask(old)
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_corrupt_missing_and_pickled(tmp_path):
    with pytest.raises(InputError, match="no such weights folder"):
        load_release(tmp_path / "none")
    save_release({"w": torch.zeros(2)}, {"kind": "toy"}, tmp_path / "m")
    f = tmp_path / "m" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(InputError, match="corrupt or unreadable safetensors"):
        load_release(tmp_path / "m")
    f.unlink()
    torch.save({"w": torch.ones(2)}, tmp_path / "m" / "model.pt")
    with pytest.raises(InputError, match="does not unpickle unless you opt in"):
        load_release(tmp_path / "m")
    _, sd = load_release(tmp_path / "m", allow_pickle=True)
    assert torch.equal(sd["w"], torch.ones(2))


def test_decoder_against_wrong_latent_source_names_both():
    config = {"latent_source": source_signature(load_latent_source("pixels-f4"))}
    check_latent_source(config, load_latent_source("pixels-f4"))
    with pytest.raises(InputError, match=r"trained on latents of 'pixels-f4' \(48 channels, 4x\) but the latent "
                                         r"source is 'pixels' \(192 channels, 8x\)"):
        check_latent_source(config, load_latent_source("pixels"), "decoder")


def test_distinct_names_lengthen_only_as_far_as_needed(tmp_path):
    from pixdiff.release import display_name, distinct_names

    a, b = tmp_path / "s2" / "student" / "weights", tmp_path / "s3" / "student" / "weights"
    assert display_name(a) == display_name(b) == "student"  # a table would show two columns "student"
    assert distinct_names([a, b]) == ["s2/student", "s3/student"]
    assert distinct_names([tmp_path / "x", tmp_path / "y" / "weights"]) == ["x", "y"]
    assert distinct_names([a]) == ["student"]
