"""The shapes world: captions parse, renders are checked correctly (>= 98%), wrong captions are caught."""
import numpy as np
import pytest
import torch

from scipy.ndimage import gaussian_filter

from pixdiff.data.shapes import COLOURS, SHAPES, Obj, Scene, check, parse, random_scene, render


def scenes(n, seed=0):
    rng = np.random.default_rng(seed)
    return [random_scene(rng) for _ in range(n)]


def test_parse_the_simplest_form_and_relations():
    assert parse("two red circles").counts == {("red", "circle"): 2}
    assert parse("one blue square").counts == {("blue", "square"): 1}
    r = parse("a green star to the left of a red circle".replace("star", "cross"))
    assert r.counts == {("green", "cross"): 1, ("red", "circle"): 1}
    assert r.relation == (("green", "cross"), "to the left of", ("red", "circle"))
    assert parse("one blue square and two yellow triangles").counts == {("blue", "square"): 1,
                                                                       ("yellow", "triangle"): 2}
    with pytest.raises(ValueError, match="not a caption of the shapes world"):
        parse("a photo of a cat")


def test_checker_accuracy_on_ground_truth_renders():
    ss = scenes(300)
    reports = [check(render(s), s.caption) for s in ss]
    assert np.mean([r["ok"] for r in reports]) >= 0.98
    assert not any(t for r in reports for t in r["touching"])  # objects of a true scene never touch
    kinds = {s.meta["kind"] for s in ss}
    assert kinds == {"count", "compose", "relation"}
    assert {o.colour for s in ss for o in s.objects} == set(COLOURS)
    assert {o.shape for s in ss for o in s.objects} == set(SHAPES)


def test_checker_survives_mild_noise_and_blur():
    rng = np.random.default_rng(1)
    ok = []
    for s in scenes(100, seed=2):
        im = render(s).astype(np.float32)
        im = (im + rng.normal(0, 8, im.shape)).clip(0, 255).astype(np.uint8)
        ok.append(check(im, s.caption)["ok"])
    assert np.mean(ok) >= 0.95


@pytest.mark.parametrize("blur", [2.0, 3.0])
def test_softened_shapes_keep_their_names(blur):
    """Decoders round corners: a diamond blurred by 2-3 px must not read as a circle (sharp templates alone did:
    at 3 px they called small triangles and diamonds circles)."""
    for shape in SHAPES:
        for side in (20, 30, 40):
            im = render(Scene([Obj(shape, "red", 64.3, 60.7, side)], ((90, 90, 90), (140, 140, 140))))
            im = gaussian_filter(im.astype(np.float32), (blur, blur, 0)).round().clip(0, 255).astype(np.uint8)
            assert check(im, f"one red {shape}")["found"] == [f"red {shape}"], (shape, side)


def test_wrong_captions_fail():
    for s in scenes(60, seed=3):
        im = render(s)
        o = s.objects[0]
        other_colour = next(c for c in COLOURS if c not in {x.colour for x in s.objects})
        assert not check(im, s.caption.replace(o.colour, other_colour))["ok"]
        if s.meta["kind"] == "relation":
            flipped = {"to the left of": "to the right of", "to the right of": "to the left of",
                       "above": "below", "below": "above"}
            rel = next(r for r in flipped if f" {r} " in s.caption)
            assert not check(im, s.caption.replace(rel, flipped[rel]))["ok"]
        if s.meta["kind"] == "count":
            n = len(s.objects)
            word = ["zero", "one", "two", "three", "four"]
            wrong = f"{word[n % 4 + 1]} {o.colour} {o.shape}s"
            assert not check(im, wrong)["ok"]


def test_check_accepts_tensors():
    s = scenes(1, seed=4)[0]
    x = torch.from_numpy(render(s).copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert check(x, s.caption)["ok"]


def test_plurals_read_naturally():
    from pixdiff.data.shapes import count_phrase

    assert count_phrase(2, "red", "cross") == "two red crosses" and count_phrase(1, "red", "cross") == "one red cross"
    assert parse("three blue crosses").counts == {("blue", "cross"): 3}


def test_a_relation_needs_two_different_objects():
    with pytest.raises(ValueError, match="two different single objects"):
        parse("a red circle to the left of a red circle")
