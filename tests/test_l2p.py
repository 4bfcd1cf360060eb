"""L2P end to end on tiny models: taxonomy and filtering, the synthetic set, transfer / train / generate CLI."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import numpy as np
import torch
from safetensors.torch import load_file

from pixdiff import flow
from pixdiff.cli.main import main
from pixdiff.data.shapes import parse
from pixdiff.errors import InputError
from pixdiff.ldm.generator import load_generator
from pixdiff.transfer.synth import SynthSet, keep_prompt, sample_prompts, taxonomy


def test_taxonomy_is_hierarchical_and_filtering_removes_overfull_scenes():
    tax = taxonomy()
    assert set(tax) == {"counting", "composition", "relation"}
    leaves = [p for cat in tax.values() for sub in cat.values() for p in sub]
    assert len(leaves) > 1000 and all(parse(p) for p in leaves)
    too_many = [p for p in leaves if sum(parse(p).counts.values()) > 4]
    assert too_many and not any(keep_prompt(p) for p in too_many)
    held_out = {p for p, _ in sample_prompts(20, seed=99)}
    drawn = sample_prompts(300, seed=0, exclude=held_out)
    prompts = [p for p, _ in drawn]
    assert len(set(prompts)) == 300 and not held_out & set(prompts) and all(keep_prompt(p) for p in prompts)
    assert {path.split("/")[0] for _, path in drawn} == set(tax)  # every category is drawn


def test_a_used_up_category_drops_out_and_too_many_prompts_is_an_error():
    from pixdiff.errors import InputError

    kept = {cat: [p for sub in subs.values() for p in sub if keep_prompt(p)] for cat, subs in taxonomy().items()}
    n_counting, total = len(kept["counting"]), sum(map(len, kept.values()))
    drawn = sample_prompts(3 * n_counting + 30, seed=0)  # more than counting can give in its turns
    cats = [path.split("/")[0] for _, path in drawn]
    assert cats.count("counting") == n_counting and len({p for p, _ in drawn}) == len(drawn)
    with pytest.raises(InputError, match=f"holds {total} prompts"):
        sample_prompts(total + 1)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("l2p")
    assert main(["train", "ldm", "--preset", "tiny", "--out", str(root / "ldm"), "--no-progress"]) == 0
    return root


def test_synth_resumes_after_a_kill_and_refuses_another_set(chain, tmp_path):
    from pixdiff.errors import InputError
    from pixdiff.ldm.generator import load_generator
    from pixdiff.transfer.synth import CAPTIONS, synthesize

    gen = load_generator(chain / "ldm" / "weights")
    full, cut = tmp_path / "full", tmp_path / "cut"
    synthesize(gen, 5, full, batch=4, progress=False)
    synthesize(gen, 5, cut, batch=4, progress=False)
    lines = (cut / CAPTIONS).read_text().splitlines(keepends=True)
    (cut / CAPTIONS).write_text("".join(lines[:6]))  # killed in the second batch of 4
    for f in sorted(cut.glob("*.png"))[6:]:
        f.unlink()
    assert synthesize(gen, 5, cut, batch=4, progress=False)["resumed_at"] == 6
    assert (cut / CAPTIONS).read_text() == (full / CAPTIONS).read_text()
    for f in sorted(full.glob("*.png")):  # the same images as the uninterrupted run
        assert (cut / f.name).read_bytes() == f.read_bytes(), f.name
    with pytest.raises(InputError, match="holds another synthetic set"):
        synthesize(gen, 5, cut, batch=4, seed=1, progress=False)
    with pytest.raises(InputError, match="holds another synthetic set"):  # same prompts, other guidance
        synthesize(gen, 5, cut, batch=4, cfg=gen.cfg.cfg + 1, progress=False)
    # a larger n extends the set to exactly the set that n makes from scratch
    assert synthesize(gen, 7, cut, batch=4, progress=False)["resumed_at"] == 10
    synthesize(gen, 7, tmp_path / "seven", batch=4, progress=False)
    assert (cut / CAPTIONS).read_text() == (tmp_path / "seven" / CAPTIONS).read_text()
    assert (cut / "000013.png").read_bytes() == (tmp_path / "seven" / "000013.png").read_bytes()


def test_synth_transfer_train_generate(chain, capsys, monkeypatch):
    root = chain
    assert main(["synth", "--teacher", str(root / "ldm" / "weights"), "--n", "5", "--out", str(root / "synth")]) == 0
    rows = [json.loads(x) for x in (root / "synth" / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all((root / "synth" / r["file"]).exists() for r in rows)
    from pixdiff.transfer.synth import MAX_HELDOUT, heldout_prompts
    assert not {r["prompt"] for r in rows} & set(heldout_prompts(MAX_HELDOUT))
    assert len(SynthSet(root / "synth")) == 10 and len(SynthSet(root / "synth", limit=4)) == 4
    assert "synth:" in capsys.readouterr().err  # the progress bar, which --no-progress hides
    assert main(["synth", "--teacher", str(root / "ldm" / "weights"), "--n", "1", "--out", str(root / "quiet"),
                 "--no-progress"]) == 0
    assert "synth:" not in capsys.readouterr().err
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--out", str(root / "student"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["family"] == "z-image" and rep["patch"] == 16 and rep["copied"] and rep["n_train"] == 1
    assert json.loads((root / "student" / "transfer_report.json").read_text())["new"] == rep["new"]
    saved = json.loads((root / "student" / "config.json").read_text())["transformer"]
    assert saved["in_channels"] == 3 and not [k for k in saved if k.startswith("_")]  # no hash-ordered diffusers keys
    # --seed draws the new tensors only: copied ones stay the source's
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--out", str(root / "s1"), "--seed", "1"]) == 0
    a, b = (load_file(root / d / "model.safetensors") for d in ("student", "s1"))
    new = {n if n.startswith("head.") else f"transformer.{n}" for n in rep["new"]}
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    assert "transformer.all_x_embedder.16-1.weight" in differ and differ <= new  # (zero-initialised ones stay equal)
    # --embed latent: the pixel patch embedding is the source's latent embedding after a map fitted on the synthetic set
    capsys.readouterr()
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--out", str(root / "aligned"), "--embed",
                 "latent", "--data", str(root / "synth"), "--json"]) == 0
    al = json.loads(capsys.readouterr().out)
    assert al["embed"] == "latent" and al["alignment"]["patches"] == 10 * 16 and al["alignment"]["r2"] > 0.3
    assert not [n for n in al["new"] if not n.startswith("head.")] and rep["embed"] == "random"
    c = load_file(root / "aligned" / "model.safetensors")
    assert {k for k in a if not torch.equal(a[k], c[k])} <= {"transformer.all_x_embedder.16-1.weight",
                                                            "transformer.all_x_embedder.16-1.bias"}
    for bad in (["--embed", "latent"], ["--data", str(root / "synth")],
                ["--embed", "latent", "--data", str(root / "synth"), "--embed-images", "0"]):
        assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--out", str(root / "x"), *bad]) == 2
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(root / "student"), "--data", str(root / "synth"),
                 "--out", str(root / "l2p"), "--no-progress"]) == 0
    gen = load_generator(root / "l2p" / "weights")
    assert gen.pixel and gen.cfg.shift == load_generator(root / "student").cfg.shift == 1.0
    capsys.readouterr()
    # --shift trains a student on at another shift and records it in the new weights (which then sample at it)
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(root / "l2p" / "weights"), "--data",
                 str(root / "synth"), "--shift", "2.5", "--steps", "1", "--out", str(root / "l2p-s2.5"),
                 "--no-progress", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["steps"] == 1 and 0 <= done["setup_s"] < 60  # reported: a GPU run budgets its start-up
    assert json.loads((root / "l2p-s2.5" / "config.json").read_text())["model_config"]["shift"] == 2.5
    assert load_generator(root / "l2p-s2.5" / "weights").cfg.sampling()["shift"] == 2.5
    # --t-uniform: recorded; a share of uniform t, never below T_MIN for an x-prediction student (its velocity is
    # (x_t - x) / max(t, T_MIN) and cannot match the target there)
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(root / "student"), "--data", str(root / "synth"),
                 "--t-uniform", "0.3", "--t-uniform-loss", "image", "--steps", "1", "--out", str(root / "l2p-u"),
                 "--no-progress"]) == 0
    recorded = json.loads((root / "l2p-u" / "config.json").read_text())["model_config"]
    assert (recorded["t_uniform"], recorded["t_uniform_loss"]) == (0.3, "image")
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(root / "student"), "--data", str(root / "synth"),
                 "--t-uniform", "1.5", "--out", str(root / "l2p-bad")]) == 2
    assert main(["train", "ldm", "--preset", "tiny", "--t-uniform", "0.3", "--out", str(root / "ldm-bad")]) == 2
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(root / "student"), "--data", str(root / "synth"),
                 "--t-uniform-loss", "image", "--out", str(root / "l2p-bad")]) == 2  # nothing to weight
    import pixdiff.train.l2p as l2p_train
    task = l2p_train.L2PTask(l2p_train.L2PTrainConfig(t_uniform=1.0), root / "student", root / "synth")
    seen = []
    monkeypatch.setattr(l2p_train, "flow_matching_loss", lambda model, x, t, g, eps: seen.append(t) or t)
    x = {"x": torch.zeros(256, 3, 64, 64), "captions": None}
    task.loss(None, x, torch.Generator().manual_seed(0))
    task.gcfg = replace(task.gcfg, prediction="x")
    task.loss(None, x, torch.Generator().manual_seed(0))
    # --t-uniform-loss image: the uniform draws' velocity loss times t^2 (their clean-image error), the rest as before
    monkeypatch.setattr(l2p_train, "flow_matching_loss", lambda model, x, t, g, eps: seen.append(t) or torch.ones_like(t))
    task.cfg = replace(task.cfg, t_uniform=0.5, t_uniform_loss="image")
    loss, _ = task.loss(None, x, torch.Generator().manual_seed(0))
    monkeypatch.undo()
    t, uniform = flow.sample_t_logit_normal_uniform(256, 0.5, torch.Generator().manual_seed(0), s=task.gcfg.shift,
                                                    t_min=flow.T_MIN, return_uniform=True)
    assert torch.equal(seen[2], t) and 0.3 < float(uniform.float().mean()) < 0.7
    expect = float(torch.where(uniform, t.square(), 1.0).mean())
    assert float(loss) == pytest.approx(expect, rel=1e-6) and expect < 0.9
    assert float(seen[0].min()) < flow.T_MIN <= float(seen[1].min())
    im = gen.generate(["two red circles"], steps=2, generator=torch.Generator().manual_seed(0))
    assert im.shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="generates pixels directly"):
        gen.generate(["two red circles"], steps=2, stop_at=1)
    capsys.readouterr()
    assert main(["generate", "--model", str(root / "l2p" / "weights"), "--prompt", "two red circles", "--n", "2",
                 "--steps", "2", "--out", str(root / "gen"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decoder"] is None and [Path(r["output"]).name for r in out["images"]] == [
        "two-red-circles-0.png", "two-red-circles-1.png"]
    assert main(["transfer", "--source", str(root / "l2p" / "weights"), "--grow", "2", "--out", str(root / "big")]) == 0
    big = load_generator(root / "big")
    assert big.cfg.size == 128 and big.velocity.patch == 32
    assert big.generate(["two red circles"], steps=1).shape == (1, 3, 128, 128)
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--grow", "2", "--out", str(root / "x")]) == 2
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--prediction", "x", "--out",
                 str(root / "student-x")]) == 0
    assert main(["transfer", "--source", str(root / "student-x"), "--grow", "2", "--shift", "2.5", "--out",
                 str(root / "big-x")]) == 0
    assert load_generator(root / "student-x").velocity.prediction == "x"
    assert load_generator(root / "big-x").velocity.prediction == "x"  # growing keeps what the head predicts
    assert load_generator(root / "big").velocity.prediction == "v"
    # edm: the zero-initialised head's clean-image estimate is x_t scaled by c_skip (the linear denoiser for data of
    # std SIGMA_DATA), from pure noise (t = 1: zero) to the image itself (t = 0)
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--prediction", "edm", "--out",
                 str(root / "student-edm")]) == 0
    edm = load_generator(root / "student-edm")
    xt, t, sd = torch.randn(3, 3, 64, 64), torch.tensor([1.0, 0.5, 0.0]), flow.SIGMA_DATA
    with torch.no_grad():
        x0 = flow.x0_from_velocity(xt, t, edm.velocity(xt, t, edm.text.encode(["two red circles"] * 3)))
    c_skip = (1 - t) * sd**2 / ((1 - t) ** 2 * sd**2 + t**2)
    assert torch.allclose(x0, c_skip.view(-1, 1, 1, 1) * xt, atol=1e-5)
    # --head-width: L2P's head (64 channels at full resolution up to 512 at the bottleneck), recorded and reloaded
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--head-width", "512", "--out",
                 str(root / "student-wide")]) == 0
    assert load_generator(root / "student-wide").velocity.head.channels == (64, 128, 256, 512)
    assert load_generator(root / "student").velocity.head.channels == (16, 32, 64, 128)
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--head-width", "100", "--out",
                 str(root / "x")]) == 2
    assert load_generator(root / "big-x").cfg.shift == 2.5 and load_generator(root / "big").cfg.shift == 1.0
    assert main(["transfer", "--source", str(root / "ldm" / "weights"), "--shift", "0", "--out", str(root / "s")]) == 2
    capsys.readouterr()
    assert main(["bench", "generate", "--source", str(root / "ldm" / "weights"), "--student", str(root / "big"),
                 "--size", "128", "--repeats", "1", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["source"]["tokens"] == 64 and b["student"]["tokens"] == 16  # 128 px: latent 16^2 / 2; pixels / 32
    assert b["student"]["seconds_per_step"] > 0
    capsys.readouterr()
    js = root / "eval.json"
    assert main(["eval", "l2p", "--source", str(root / "ldm" / "weights"), "--student", str(root / "l2p" / "weights"),
                 "--student", str(root / "big"), "--prompts", "6", "--per-prompt", "2", "--steps", "2",
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    st = r["students"]["l2p"]  # a run's weights/ folder is called after its run
    assert r["source"]["n"] == 12 and 0 <= st["accuracy"] <= 1 and st["size"] == 64
    assert r["students"]["big"]["size"] == 128 and r["students"]["big"]["n"] == 12
    from pixdiff.eval.l2p import evaluate_l2p
    small = evaluate_l2p(load_generator(root / "ldm" / "weights"), [big], n_prompts=1, per_prompt=2, steps=1,
                         progress=False, features=lambda ims: ims.mean((2, 3)))
    assert small["samples"]["big"].shape == (2, 3, 64, 64)  # the grown student is scored at the source's size
    mean_rgb = {k: v.mean((2, 3)).double().mean(0) for k, v in small["samples"].items()}
    fd = small["students"]["big"]
    assert fd["frechet_mean_term"] == round(float((mean_rgb["big"] - mean_rgb["ldm"]).pow(2).sum()), 4)
    assert 0 <= fd["frechet_mean_term"] <= fd["frechet_to_source"] + 1e-4
    src = r["source"]["accuracy"]
    assert st["retention"] == (round(st["accuracy"] / src, 4) if src > 0 else None)
    vs = st["vs_source"]  # paired on the same prompts and seeds: the net gain is the accuracy difference
    assert vs["gained"] - vs["lost"] == round(12 * (st["accuracy"] - src)) and vs["gained"] + vs["lost"] <= 12
    assert r["reference"]["renders"]["accuracy"] >= 11 / 12  # the checker on ground truth (tested >= 98% at 128^2)
    assert r["reference"]["roundtrip"]["source"] == "vae-f8c16" and r["reference"]["roundtrip"]["psnr"] > 15
    assert "| l2p |" in capsys.readouterr().out and r["source"]["name"] == "ldm"


def test_coupled_noise_student_starts_where_its_source_starts(chain, tmp_path, capsys):
    """synth records each image's starting noise (remaking it from the record reproduces the image); a coupled-noise
    student's embedding reads its noise as exactly the source's noise of the same seed, and it trains on the pairs."""
    from pixdiff.transfer.synth import CAPTIONS, synthesize

    source = load_generator(chain / "ldm" / "weights")
    synth = tmp_path / "synth"
    synthesize(source, 5, synth, batch=4, progress=False)  # 10 images: the map's fit needs 128 patches
    data = SynthSet(synth, noise=True)
    assert data.noise.shape == (10, *source.latent_shape)
    remade = source.generate(data.prompts[8:], noise=data.noise[8:])  # the last batch, from its record
    assert (remade - data.images[8:]).abs().max() <= 1 / 127.5 + 1e-6  # PNG quantisation only
    ldm = str(chain / "ldm" / "weights")
    assert main(["transfer", "--source", ldm, "--out", str(tmp_path / "st"), "--embed", "latent", "--data",
                 str(synth), "--coupled-noise", "--prediction", "x"]) == 0
    student = load_generator(tmp_path / "st")
    assert student.cfg.noise == "coupled" and student.velocity.coupled
    fam, m = student.velocity.family, student.velocity.embed_map
    eps = student.noise(3, torch.Generator().manual_seed(7))
    assert eps.shape == (3, 3, 64, 64) and 0.9 < float(eps.std()) < 1.1
    read = fam.patch_vectors(eps, 16) @ m.T  # what the aligned embedding reads, before its offset
    want = fam.patch_vectors(source.noise(3, torch.Generator().manual_seed(7)), 2)
    assert torch.allclose(read, want, atol=1e-4)
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(tmp_path / "st"), "--data", str(synth),
                 "--steps", "3", "--out", str(tmp_path / "trained"), "--no-progress"]) == 0
    trained = load_generator(tmp_path / "trained" / "weights")
    assert trained.cfg.noise == "coupled" and torch.equal(trained.velocity.embed_map, m)  # the map travels
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(tmp_path / "st"), "--data", str(synth),
                 "--steps", "2", "--own-path", "0.5", "--out", str(tmp_path / "own"), "--no-progress"]) == 0
    assert trained.generate(["two red circles"], steps=2, generator=torch.Generator().manual_seed(0)).shape == (
        1, 3, 64, 64)
    # a coupled student grows into a plain-noise one (the map fits the old patch)
    assert main(["transfer", "--source", str(tmp_path / "trained" / "weights"), "--grow", "2", "--out",
                 str(tmp_path / "grown")]) == 0
    grown = load_generator(tmp_path / "grown")
    assert grown.cfg.noise == "pixel" and not grown.velocity.coupled and grown.cfg.size == 128
    assert grown.noise(1, torch.Generator().manual_seed(0)).shape == (1, 3, 128, 128)
    # bad input: no --embed latent; a set that does not record its noise
    capsys.readouterr()
    assert main(["transfer", "--source", ldm, "--out", str(tmp_path / "x"), "--coupled-noise"]) == 2
    assert "--coupled-noise needs --embed latent" in capsys.readouterr().err
    rows = [json.loads(x) for x in (synth / CAPTIONS).read_text().splitlines()]
    (synth / CAPTIONS).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "noise"}) + "\n"
                                          for r in rows))
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(tmp_path / "st"), "--data", str(synth),
                 "--steps", "1", "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "does not record its images' starting noise" in capsys.readouterr().err
    assert main(["transfer", "--source", ldm, "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(tmp_path / "plain"), "--data", str(synth),
                 "--own-path", "0.5", "--out", str(tmp_path / "z"), "--no-progress"]) == 2
    assert "--own-path follows the student's path from the noise paired" in capsys.readouterr().err


def test_own_path_noises_along_the_models_euler_path():
    """--own-path: for the field v(z) = z, m Euler steps from the paired noise eps at t = 1 reach
    eps (1 + (t - 1) / m)^m; the target is the velocity from there to the clean image. Dropped captions (and the
    share not drawn) keep the straight line, whose target is eps - x."""
    from pixdiff.train.l2p import L2PTask, L2PTrainConfig

    task = object.__new__(L2PTask)  # only the loss: no student or data needed
    task.cfg, task.device = L2PTrainConfig(own_path=1.0, own_path_steps=3), torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([0.3, 0.6])
    b = {"x": x, "eps": eps, "captions": [None, None], "dropped": torch.tensor([False, True])}
    loss = task.own_path_loss(lambda z, tt, caps: z, b, t, g)
    z0 = eps[0] * (1 + (0.3 - 1) / 3) ** 3
    assert torch.allclose(loss[0], (z0 - (z0 - x[0]) / 0.3).square().mean(), rtol=1e-5)
    x_t1 = 0.4 * x[1] + 0.6 * eps[1]  # the straight line
    assert torch.allclose(loss[1], (x_t1 - (eps[1] - x[1])).square().mean(), rtol=1e-5)


def test_eval_cache_returns_the_same_samples_and_resamples_a_changed_model(chain, tmp_path, monkeypatch):
    import pixdiff.eval.l2p as ev

    gen = load_generator(chain / "ldm" / "weights")
    first = ev.evaluate_l2p(gen, [], n_prompts=2, per_prompt=1, steps=1, progress=False, cache=tmp_path)
    assert len(list(tmp_path.glob("ldm-*.pt"))) == 1 and len(list(tmp_path.glob("reference-*.pt"))) == 1

    def no_sampling(*a, **k):
        raise AssertionError("sampled again")

    monkeypatch.setattr(ev, "sample_all", no_sampling)
    monkeypatch.setattr(gen.source, "encode", no_sampling)  # the renders' VAE round trips come from the cache too
    again = ev.evaluate_l2p(gen, [], n_prompts=2, per_prompt=1, steps=1, progress=False, cache=tmp_path)
    assert torch.equal(again["samples"]["ldm"], first["samples"]["ldm"]) and again["source"] == first["source"]
    assert again["reference"] == first["reference"]
    gen.name = "runs/s2/ldm"  # shown under another name (eval l2p's distinct columns): the same model still hits
    assert torch.equal(ev.evaluate_l2p(gen, [], n_prompts=2, per_prompt=1, steps=1, progress=False,
                                       cache=tmp_path)["samples"]["runs/s2/ldm"], first["samples"]["ldm"])
    gen.name = "ldm"
    with torch.no_grad():
        next(gen.velocity.parameters()).add_(1e-3)  # another model under the same name
    with pytest.raises(AssertionError, match="sampled again"):
        ev.evaluate_l2p(gen, [], n_prompts=2, per_prompt=1, steps=1, progress=False, cache=tmp_path)
    with pytest.raises(AssertionError, match="sampled again"):  # another setting
        ev.evaluate_l2p(load_generator(chain / "ldm" / "weights"), [], n_prompts=2, per_prompt=1, steps=2,
                        progress=False, cache=tmp_path)


def test_eval_samples_do_not_depend_on_the_batch(chain):
    """The noise is drawn per 16 samples, seeded by the block's first index: a GPU's larger batch samples the same
    images (and so shares the cache), and a block is what `generate` makes from that seed."""
    from pixdiff.eval.l2p import job_prompts, sample_all

    gen = load_generator(chain / "ldm" / "weights")
    prompts = ["two red circles", "one blue square", "three green triangles"]
    a = sample_all(gen, prompts, 7, seed=1, steps=1, progress=False)  # 21 samples: blocks of 16 and 5
    b = sample_all(gen, prompts, 7, seed=1, steps=1, batch=32, progress=False)
    assert a.shape == (21, 3, 64, 64) and torch.allclose(a, b, atol=1e-5)
    block = gen.generate(job_prompts(prompts, 7)[16:], steps=1, generator=torch.Generator().manual_seed(100003 + 16))
    assert torch.allclose(a[16:], block, atol=1e-5) and not torch.allclose(a[:5], block, atol=1e-2)
    gen.cfg = replace(gen.cfg, eta=0.5)  # a stochastic sampler's fresh noise is drawn per block too
    a = sample_all(gen, prompts, 7, seed=1, steps=3, progress=False)
    b = sample_all(gen, prompts, 7, seed=1, steps=3, batch=32, progress=False)
    assert torch.allclose(a, b, atol=1e-5)
    block = gen.generate(job_prompts(prompts, 7)[16:], steps=3, generator=torch.Generator().manual_seed(100003 + 16))
    assert torch.allclose(a[16:], block, atol=1e-5)
    with pytest.raises(InputError, match="multiple of 16"):
        sample_all(gen, prompts, 7, seed=1, batch=20, progress=False)
    with pytest.raises(InputError, match=r"expected \(2, 16, 8, 8\)"):
        gen.generate(["a", "b"], noise=torch.zeros(2, 3, 64, 64))


def test_geneval_lite_statistics_are_the_binomial_and_mcnemar_ones():
    from pixdiff.eval.l2p import paired, summarize

    prompts = ["two red circles", "one blue square to the left of one red circle"]  # counting, relation
    r = summarize([True, False, False, False], prompts, per_prompt=2)  # jobs: p0, p1, p0, p1
    assert r["accuracy"] == 0.25 and r["se"] == round((0.25 * 0.75 / 4) ** 0.5, 4) and r["n"] == 4
    assert r["by_category"] == {"counting": 0.5, "relation": 0.0}
    student, source = [True, True, False, False, True], [False, True, True, False, False]
    assert paired(student, source) == {"gained": 2, "lost": 1, "z": round(1 / 3**0.5, 2)}
    assert paired([False] * 3, [False] * 3)["z"] == 0.0


def test_object_stats_count_objects_and_measure_their_area():
    """Squares of known side: the checker's blobs give their count and area (side^2 / 128^2, up to the rendered
    border pixels), whether or not the caption passes."""
    from pixdiff.data.shapes import Obj, Scene, render
    from pixdiff.eval.l2p import geneval_lite

    bg = ((90, 90, 90), (90, 90, 90))
    one = render(Scene([Obj("square", "red", 40, 40, 20)], bg))
    two = render(Scene([Obj("square", "red", 30, 30, 20), Obj("square", "red", 90, 90, 40)], bg))
    ims = torch.from_numpy(np.stack([one, two])).permute(0, 3, 1, 2).float() / 127.5 - 1
    r, ok = geneval_lite(ims, ["one red square", "one red square"], per_prompt=1)
    assert ok == [True, False] and r["accuracy"] == 0.5
    assert r["objects"] == 1.5 and r["asked"] == 1.0  # 3 objects found in 2 images, 1 asked in each
    blue, _ = geneval_lite(ims, ["one blue square"] * 2, per_prompt=1)
    assert r["stray"] == 0.0 and blue["stray"] == 1.5 and blue["median_area"] is None  # no blue object to measure
    assert 1.0 <= r["median_area"] / (20**2 / 128**2) < 1.15  # the median of about 400, 400 and 1600 pixels
    assert (r["extra"], r["missing"], blue["extra"], blue["missing"]) == (0.5, 0.0, 0.0, 1.0)
    # colours and counts right in the first image only, and there the shape too; asked a circle, the shape is wrong
    assert (r["colour_counts"], r["shapes_right"], blue["colour_counts"], blue["shapes_right"]) == (0.5, 1.0, 0.0, None)
    circle, ok = geneval_lite(ims[:1], ["one red circle"], per_prompt=1)
    assert ok == [False] and (circle["colour_counts"], circle["shapes_right"]) == (1.0, 0.0)
    # a yellow strip 2 px from the red square is a fringe (touching); the same strip far from it is an object apart
    fringe, apart = one.copy(), one.copy()
    fringe[32:48, 52:57] = apart[100:116, 100:105] = (255, 255, 0)
    ims = torch.from_numpy(np.stack([fringe, apart])).permute(0, 3, 1, 2).float() / 127.5 - 1
    r, ok = geneval_lite(ims, ["one red square"] * 2, per_prompt=1)
    assert ok == [False, False] and r["stray"] == 1.0 and r["stray_touching"] == 0.5


def test_configure_sets_a_generators_sampling_defaults(chain, tmp_path, capsys):
    """`pixdiff configure` on a generator: shift, steps and cfg go into config.json, the weights stay bit-identical,
    and sampling with the copy equals sampling the original with those settings."""
    src = chain / "ldm" / "weights"
    assert main(["configure", str(src), "--shift", "2", "--steps", "3", "--out", str(tmp_path / "g"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["before"]["shift"] == 1.0 and report["after"] == {**report["before"], "shift": 2.0, "steps": 3}
    a, b = load_file(src / "model.safetensors"), load_file(tmp_path / "g" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "g" / "config.json").read_text())
    assert (saved["shift"], saved["sample_shift"]) == (1.0, 2.0)  # the training shift stays for runs started from it
    assert main(["transfer", "--source", str(tmp_path / "g"), "--out", str(tmp_path / "st")]) == 0
    assert "sample_shift" not in json.loads((tmp_path / "st" / "config.json").read_text())  # new weights: unset
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "g"), "--prompt", "two red circles", "--out",
                 str(tmp_path / "im"), "--json"]) == 0
    sampling = json.loads(capsys.readouterr().out)["sampling"]  # what made the images, as resolved
    assert sampling == {"steps": 3, "cfg": report["before"]["cfg"], "shift": 2.0, "eta": 0.0, "seed": 0}
    old, new = load_generator(src), load_generator(tmp_path / "g")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    x = new.generate(["two red circles"], generator=g())
    assert not torch.equal(x, old.generate(["two red circles"], steps=3, generator=g()))  # the shift changes it
    old.cfg = replace(old.cfg, shift=2.0)  # sampling at the training shift 2 draws the same grid
    assert torch.equal(x, old.generate(["two red circles"], steps=3, generator=g()))
    for bad, err in ((["--temperature", "0.5"], "--temperature does not apply to"),
                     (["--shift", "0"], "--shift must be > 0, got 0.0"),
                     (["--cfg", "0.5"], "--cfg must be >= 1, got 0.5"),
                     (["--eta", "1.5"], "--eta must be in [0, 1], got 1.5"),
                     ([], "nothing to set: give --shift and/or --steps and/or --cfg and/or --eta")):
        assert main(["configure", str(src), *bad, "--out", str(tmp_path / "x")]) == 2
        assert err in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eta_re_noises_each_step_and_generate_or_configure_set_it(chain, tmp_path, capsys):
    """--eta: a seeded stochastic sampler, 0 being the Euler ODE bit for bit; `configure --eta` stores it as the
    default (only when not 0, so older releases and their sample caches keep their keys), `generate --eta` sets it
    for one call, and the same seed gives the same images either way."""
    src = chain / "ldm" / "weights"
    assert main(["configure", str(src), "--eta", "0", "--out", str(tmp_path / "e0")]) == 0
    assert "eta" not in json.loads((tmp_path / "e0" / "config.json").read_text())
    assert main(["configure", str(src), "--eta", "0.7", "--out", str(tmp_path / "e7")]) == 0
    gen, stoch = load_generator(src), load_generator(tmp_path / "e7")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    euler = gen.generate(["two red circles"], steps=4, generator=g())
    x = stoch.generate(["two red circles"], steps=4, generator=g())
    assert torch.equal(x, stoch.generate(["two red circles"], steps=4, generator=g()))
    assert not torch.allclose(x, euler, atol=1e-3)
    assert torch.equal(euler, load_generator(tmp_path / "e0").generate(["two red circles"], steps=4, generator=g()))
    capsys.readouterr()
    for model, extra, out in ((src, ["--eta", "0.7"], "a"), (tmp_path / "e7", [], "b")):
        assert main(["generate", "--model", str(model), "--prompt", "two red circles", "--steps", "4", *extra,
                     "--out", str(tmp_path / out), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["sampling"]["eta"] == 0.7
    assert (tmp_path / "a" / "two-red-circles-0.png").read_bytes() == (tmp_path / "b" / "two-red-circles-0.png").read_bytes()
    assert main(["generate", "--model", str(src), "--prompt", "x", "--eta", "-0.1", "--out", str(tmp_path / "c")]) == 2
    assert "--eta must be in [0, 1], got -0.1" in capsys.readouterr().err


def test_bad_sources_and_missing_inputs(chain, tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "vae"}))
    assert main(["transfer", "--source", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither a pixdiff generator" in capsys.readouterr().err
    assert main(["train", "l2p", "--preset", "tiny", "--out", str(tmp_path / "o")]) == 2
    assert "needs --init STUDENT" in capsys.readouterr().err
    assert main(["train", "l2p", "--preset", "tiny", "--init", str(chain / "ldm" / "weights"), "--data", "shapes",
                 "--out", str(tmp_path / "o2")]) == 2
    assert "is not an L2P student" in capsys.readouterr().err


def test_train_ldm_fine_tunes_a_released_generator_at_another_shift(chain, tmp_path, capsys):
    from pixdiff.latents import load_latent_source
    from pixdiff.train.ldm import TRAIN_PRESETS, LDMTask

    src = chain / "ldm" / "weights"
    task = LDMTask(TRAIN_PRESETS["tiny"][0], load_latent_source("vae-f8c16"), init=src)
    released = load_generator(src).velocity.state_dict()
    assert all(torch.equal(v, released[k]) for k, v in task.model.state_dict().items())
    assert main(["train", "ldm", "--preset", "tiny", "--init", str(src), "--shift", "3", "--steps", "2",
                 "--out", str(tmp_path / "ft"), "--no-progress"]) == 0
    tuned = load_generator(tmp_path / "ft" / "weights")
    assert tuned.cfg.shift == 3.0 and load_generator(src).cfg.shift == 1.0  # trained and sampled at shift 3
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"] == str(src)
    capsys.readouterr()
    assert main(["train", "ldm", "--preset", "small", "--init", str(src), "--out", str(tmp_path / "a")]) == 2
    assert "not a latent generator of this preset (small, 128^2)" in capsys.readouterr().err
    assert main(["train", "vae", "--preset", "tiny", "--shift", "3", "--out", str(tmp_path / "b")]) == 2
    assert "--shift is for pid, ldm and l2p runs, not vae" in capsys.readouterr().err
    assert main(["train", "ldm", "--preset", "tiny", "--shift", "-1", "--out", str(tmp_path / "c")]) == 2
    assert "--shift must be positive, got -1" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")  # refused before anything was written


def test_heldout_prompts_are_a_stable_prefix_and_never_synthesized():
    from pixdiff.transfer.synth import MAX_HELDOUT, heldout_prompts

    assert heldout_prompts(10) == heldout_prompts(50)[:10]
    held = set(heldout_prompts(MAX_HELDOUT))
    assert len(held) == MAX_HELDOUT
    with pytest.raises(InputError, match="at most 200"):
        heldout_prompts(201)


def test_retention_is_undefined_when_the_source_passes_nothing():
    from pixdiff.eval.l2p import retention

    assert retention(0.021, 0.05) == 0.42 and retention(0.05, 0.05) == 1.0
    assert retention(0.0, 0.0) is None and retention(0.1, 0.0) is None


def test_shipped_student_keeps_the_shipped_generators_middle_blocks():
    """l2p-shapes was transferred from ldm-shapes with the middle blocks frozen: they must be the same tensors."""
    from safetensors.torch import load_file

    from pixdiff.latents.registry import shipped

    student, source = shipped("l2p-shapes"), shipped("ldm-shapes")
    cfg = json.loads((student / "config.json").read_text())
    st, src = load_file(student / "model.safetensors"), load_file(source / "model.safetensors")
    n_layers, n = cfg["transformer"]["n_layers"], cfg["n_train"]
    frozen = [k for k in st if any(k.startswith(f"transformer.layers.{i}.") for i in range(n, n_layers - n))]
    assert cfg["kind"] == "l2p" and cfg["head"] == "detailer" and len(frozen) > 0
    assert all(torch.equal(st[k], src[k]) for k in frozen)
    trained = [k for k in st if k.startswith("transformer.layers.0.")]  # a shallow block did train
    assert trained and not all(torch.equal(st[k], src[k]) for k in trained)
