"""Image I/O edge cases, the bicubic resampler against PIL, deterministic crops."""
import numpy as np
import pytest
import torch
from PIL import Image

from pixdiff import InputError
from pixdiff.data.crops import RandomCrops, augment, eval_crops, step_generator
from pixdiff.data.images import downsample, load_image, resize, save_image, to_float, to_uint8


def photo_like(h=96, w=128, seed=0) -> np.ndarray:
    """A smooth image plus texture, like a photo crop (uint8 HWC)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(xx / 9.0), 128 + 80 * np.cos(yy / 7.0), 128 + 60 * np.sin((xx + yy) / 5.0)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_downsample_matches_pil_bicubic(factor):
    arr = photo_like()
    h, w = arr.shape[0] // factor, arr.shape[1] // factor
    arr = arr[: h * factor, : w * factor]
    ref = np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC)).astype(np.float64)
    ours = to_uint8(downsample(to_float(torch.from_numpy(arr).permute(2, 0, 1))[None], factor))[0]
    diff = np.abs(ours.permute(1, 2, 0).numpy().astype(np.float64) - ref)
    assert diff.mean() <= 1.0  # within 1/255 on average
    assert diff.max() <= 3


def test_upsampling_is_bicubic_too():
    arr = photo_like(32, 32)
    ref = np.asarray(Image.fromarray(arr).resize((128, 128), Image.BICUBIC)).astype(np.float64)
    ours = to_uint8(resize(to_float(torch.from_numpy(arr).permute(2, 0, 1))[None], (128, 128)))[0]
    assert np.abs(ours.permute(1, 2, 0).numpy() - ref).mean() <= 1.0


def test_load_converts_grey_rgba_palette_and_says_so(tmp_path):
    Image.fromarray(np.full((8, 8), 77, np.uint8), "L").save(tmp_path / "g.png")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent red -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    g, a = load_image(tmp_path / "g.png"), load_image(tmp_path / "a.png")
    assert g.pixels.shape == (3, 8, 8) and int(g.pixels[1, 0, 0]) == 77 and g.note == "converted L -> RGB"
    assert int(a.pixels.min()) == 255 and a.note == "converted RGBA -> RGB"
    Image.fromarray(photo_like(8, 8)).save(tmp_path / "c.png")
    assert load_image(tmp_path / "c.png").note is None


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="no such image"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="cannot read image"):
        load_image(tmp_path / "bad.png")
    Image.fromarray(photo_like(64, 64)).save(tmp_path / "t.jpg")
    (tmp_path / "trunc.jpg").write_bytes((tmp_path / "t.jpg").read_bytes()[:200])
    with pytest.raises(InputError, match="cannot read image"):
        load_image(tmp_path / "trunc.jpg")


def test_save_and_reload_is_exact(tmp_path):
    x = to_float(torch.from_numpy(photo_like(16, 16)).permute(2, 0, 1))
    save_image(x, tmp_path / "x.png")
    assert torch.equal(load_image(tmp_path / "x.png").pixels, to_uint8(x))


def test_crops_are_deterministic_for_a_seed(tmp_path):
    for i in range(3):
        Image.fromarray(photo_like(80, 100, seed=i)).save(tmp_path / f"{i}.png")
    data = RandomCrops(tmp_path, 32, max_zoom=2.0)
    a, b = data.sample(4, step_generator(7, 3)), data.sample(4, step_generator(7, 3))
    c = data.sample(4, step_generator(7, 4))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= -1 and float(a.max()) <= 1
    with pytest.raises(InputError, match="smaller than the crop size 128"):
        RandomCrops(tmp_path, 128)
    crops, names = eval_crops(tmp_path, 64, per_image=2)
    assert crops.shape == (6, 3, 64, 64) and names[:2] == ["0-whole", "0-crop0"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        eval_crops(tmp_path / "empty", 8)


def test_augment_is_a_dihedral_move_plus_a_colour_change():
    g = torch.Generator().manual_seed(0)
    grey = (torch.rand(1, 1, 6, 6) * 2 - 1).expand(1, 3, 6, 6)  # saturation and permutation leave grey alone
    seen = set()
    for _ in range(40):
        y = augment(grey, g)
        assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])
        moves = {k: torch.rot90(grey[0, 0], k) for k in range(4)}
        match = [(k, f) for k, m in moves.items() for f in (0, 1) if torch.allclose(y[0, 0], m.flip(0) if f else m)]
        assert match, "not one of the 8 moves of the square"
        seen.add(match[0])
    assert len(seen) == 8
    # colour: over many draws every channel takes each of the others' places (the channel means even out)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    means = torch.stack([augment(red, g).mean((0, 2, 3)) for _ in range(300)]).mean(0)
    assert float(means.max() - means.min()) < 0.1
    assert torch.equal(augment(red, step_generator(1, 2)), augment(red, step_generator(1, 2)))
