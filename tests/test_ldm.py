"""The latent generator: Z-Image conventions, text encoder behaviour, generation contract, training signal."""
import pytest
import torch

from pixdiff.errors import InputError
from pixdiff.latents import load_latent_source
from pixdiff.ldm.generator import load_generator
from pixdiff.ldm.text import TextEncoder
from pixdiff.ldm.zimage import ZImageVelocity, build_zimage, zimage_forward
from pixdiff.train.ldm import TRAIN_PRESETS, LDMTask
from pixdiff.train.loop import train


def test_text_encoder_truncates_with_a_warning_and_encodes_the_empty_prompt():
    te = TextEncoder(max_tokens=6)
    with pytest.warns(UserWarning, match="1 prompt.* longer than 6 tokens were truncated"):
        states = te.encode(["two red circles", "one blue square to the left of a yellow triangle"])
    assert states[0].shape == (5, 384) and states[1].shape == (6, 384)  # CLS two red circles SEP; cut at 6
    empty = te.encode([""])[0]
    assert empty.shape == (2, 384)  # CLS SEP: the unconditional input


def test_zimage_wrapper_uses_pixdiff_time_and_velocity_conventions():
    torch.manual_seed(0)
    net = ZImageVelocity(build_zimage("tiny", 16, 384))
    x, caps = torch.randn(2, 16, 4, 4), [torch.randn(3, 384), torch.randn(5, 384)]
    t = torch.tensor([0.2, 0.9])
    seen = {}
    net.transformer.t_embedder.register_forward_hook(lambda m, a, o: seen.update(t=a[0].clone()))
    raw = net.transformer(list(x.unsqueeze(2).unbind(0)), 1 - t, caps, return_dict=False)[0]
    v = net(x, t, caps)
    assert torch.allclose(seen["t"], (1 - t) * net.transformer.t_scale)  # Z-Image's clock runs the other way
    assert torch.allclose(v, -torch.stack(raw).squeeze(2), atol=1e-6)  # and predicts x0 - eps


@pytest.mark.parametrize("channels, patch, side", [(16, 2, 16), (16, 2, 8), (3, 16, 64)])
@pytest.mark.parametrize("lengths", [[5, 5, 5], [3, 40, 7], [32, 31, 1], [33, 64, 70]])
def test_batched_forward_is_the_diffusers_forward(channels, patch, side, lengths):
    """zimage_forward (one batch, masks) computes what diffusers' list forward does: images whose token count is or
    is not a multiple of 32, captions of equal and of different padded lengths; random weights, since Z-Image's
    zero-initialised output layer would hide any mistake. Bit-identical on AVX2 CPUs; on AVX-512 ones a kernel of
    another shape rounds one case differently (by 1 ulp), so the bound is 1e-6, where a mistake shows as > 1e-2."""
    torch.manual_seed(0)
    model = build_zimage("tiny", channels, 384, patch).eval()
    for prm in model.parameters():
        prm.data.normal_(0, 0.05)
    x, t = torch.randn(3, channels, side, side), torch.rand(3)
    caps = [torch.randn(n, 384) for n in lengths]
    with torch.no_grad():
        ref = model(list(x.unsqueeze(2).unbind(0)), t, caps, patch_size=patch, return_dict=False)[0]
        out = zimage_forward(model, x, t, caps)
    assert out.abs().max() > 0.1 and (out - torch.stack(ref).squeeze(2)).abs().max() <= 1e-6


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    cfg, opt = TRAIN_PRESETS["tiny"]
    out = tmp_path_factory.mktemp("ldm")
    train(LDMTask(cfg, load_latent_source("vae-f8c16")), opt, out, progress=False)
    return load_generator(out / "weights")


def test_generation_contract(tiny_generator):
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = tiny_generator.generate(["two red circles", ""], steps=2, generator=g(0))
    b = tiny_generator.generate(["two red circles", ""], steps=2, generator=g(0))
    c = tiny_generator.generate(["two red circles", ""], steps=2, generator=g(1))
    assert a.shape == (2, 3, 64, 64) and torch.equal(a, b) and not torch.equal(a, c)
    z, sigma = tiny_generator.sample_latents(["one blue square"], steps=4, generator=g(0), stop_at=2)
    assert z.shape == (1, 16, 8, 8) and 0 < sigma < 1
    with pytest.raises(InputError, match="needs --decoder"):
        tiny_generator.generate(["x"], stop_at=1)
    seen = []  # callback: each step's clean-sample prediction; the last step lands on it (Euler to t = 0)
    z = tiny_generator.sample_latents(["one blue square"], steps=4, generator=g(0),
                                      callback=lambda i, t, x0: seen.append((i, t, x0)))[0]
    assert [i for i, _, _ in seen] == [0, 1, 2, 3] and seen[0][1] == 1.0 and seen[-1][1] < seen[-2][1]
    assert torch.allclose(seen[-1][2], z, atol=1e-6) and not torch.allclose(seen[0][2], z, atol=1e-3)
    with pytest.raises(InputError, match="between 1 and the number of steps"):
        tiny_generator.sample_latents(["x"], steps=3, stop_at=5)


class GaussianVelocity(torch.nn.Module):
    """The exact velocity E[eps - x0 | x_t] of data x0 ~ N(mu, s^2) per value, x_t = (1 - t) x0 + t eps."""

    def __init__(self, mu: float, s: float):
        super().__init__()
        self.mu, self.s = mu, s
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the generator a device

    def forward(self, x, t, captions):
        a, t = 1 - t.view(-1, 1, 1, 1), t.view(-1, 1, 1, 1)
        var = a**2 * self.s**2 + t**2  # of x_t
        r = x - a * self.mu
        return t / var * r - (self.mu + a * self.s**2 / var * r)


def exact_std(mu: float, s: float, eta: float, grid: torch.Tensor) -> float:
    """The std of the sampler's output for GaussianVelocity, step by step: each step is linear in x_t plus fresh
    noise, so the variance of x_t - (1 - t) mu follows a recursion (the discretisation error included)."""
    var = 1.0
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
        a = 1 - t
        k_x0, k_eps = a * s**2 / (a**2 * s**2 + t**2), t / (a**2 * s**2 + t**2)  # E[x0 | x_t] - mu, E[eps | x_t]
        c = eta * t_next / t * (t**2 - (a / (1 - t_next) * t_next) ** 2) ** 0.5 if t_next > 0 else 0.0
        gain = (1 - t_next) * k_x0 + (t_next**2 - c**2) ** 0.5 * k_eps  # at eta = 0: the Euler step's 1 + dt (k_eps - k_x0)
        var = gain**2 * var + c**2
    return var**0.5


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_stochastic_sampling_matches_the_exact_gaussian_recursion(eta):
    """Gaussian data, exact velocity: the samples' mean is the data's and their std the analytic one of this many
    steps (0.286 / 0.283 / 0.271 for eta 0 / 0.5 / 1 at 40 steps, all -> 0.3 with more steps). A re-noising without
    DDPM's step-sized noise would shrink the spread (0.20 at eta = 1)."""
    from pixdiff.flow.schedule import timesteps
    from pixdiff.ldm.generator import Generator, GeneratorConfig

    cfg = GeneratorConfig(latent_source={"name": "-", "channels": 1, "factor": 8}, size=512, eta=eta, cfg=1.0)
    gen = Generator(GaussianVelocity(mu=0.5, s=0.3), cfg)
    x, sigma = gen.sample_latents([""] * 4, steps=40, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 64, 64) and sigma == 0.0
    assert abs(x.mean() - 0.5) < 0.01 and abs(x.std() - exact_std(0.5, 0.3, eta, timesteps(40, 1.0).double())) < 0.005


def test_generate_hands_pid_the_half_denoised_latent(tiny_generator):
    """--stop-at K: the output is PiD's decode of the latent after K steps at its noise level, with the same seed;
    a decoder of another latent space is refused."""
    from pixdiff.decoder import PiD, PiDConfig, PiDDecoder
    from pixdiff.nn.pixel_dit import PRESETS

    def decoder(source):
        torch.manual_seed(0)
        return PiDDecoder(PiD(PiDConfig(net=PRESETS["tiny"], latent_source=source, adapter_hidden=8,
                                        adapter_blocks=1)), "t").to("cpu")

    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    dec = decoder({"name": "vae-f8c16", "channels": 16, "factor": 8})
    out = tiny_generator.generate(["two red circles"], steps=4, generator=g(0), decoder=dec, stop_at=2,
                                  decoder_steps=2)
    g0 = g(0)
    z, sigma = tiny_generator.sample_latents(["two red circles"], steps=4, generator=g0, stop_at=2)
    assert out.shape == (1, 3, 256, 256) and out.device.type == "cpu"  # 64^2 generator, PiD at 4x
    assert torch.equal(out, dec.decode(z, sigma=sigma, steps=2, generator=g0))
    with pytest.raises(InputError, match="decodes 'pixels-f4' latents"):
        tiny_generator.generate(["x"], decoder=decoder({"name": "pixels-f4", "channels": 48, "factor": 4}))


def test_loss_falls_on_one_batch():
    torch.manual_seed(0)
    cfg, _ = TRAIN_PRESETS["tiny"]
    task = LDMTask(cfg, load_latent_source("vae-f8c16"))
    b = task.batch(8, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(task.model.parameters(), lr=3e-3)

    def loss():
        return task.loss(task.model, b, torch.Generator().manual_seed(1))[0]

    start = float(loss().detach())
    for _ in range(40):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.7 * start


def test_scene_pool_is_deterministic_and_matches_the_stream():
    from dataclasses import replace

    import numpy as np

    cfg, _ = TRAIN_PRESETS["tiny"]
    src = load_latent_source("vae-f8c16")
    a, b = LDMTask(replace(cfg, pool=5), src), LDMTask(replace(cfg, pool=5), src)
    assert torch.equal(a.pool_z, b.pool_z) and a.pool_captions == b.pool_captions
    z, caps = a.encode_scenes(5, np.random.default_rng(0))  # the pool is the seeded stream, stored in fp16
    assert caps == a.pool_captions and torch.equal(z, a.pool_z)
    batch = a.batch(4, torch.Generator().manual_seed(0))
    assert batch["z"].shape == (4, 16, 8, 8) and len(batch["captions"]) == 4


def test_scene_pool_is_cached_for_resumed_runs(tmp_path, monkeypatch):
    from dataclasses import replace

    cfg, _ = TRAIN_PRESETS["tiny"]
    src = load_latent_source("vae-f8c16")
    first = LDMTask(replace(cfg, pool=5), src, cache=tmp_path / "pool.pt")
    monkeypatch.setattr(LDMTask, "encode_scenes", lambda *a, **k: pytest.fail("the cached pool was encoded again"))
    again = LDMTask(replace(cfg, pool=5), src, cache=tmp_path / "pool.pt")
    assert torch.equal(first.pool_z, again.pool_z) and first.pool_captions == again.pool_captions
    monkeypatch.undo()
    other = LDMTask(replace(cfg, pool=6), src, cache=tmp_path / "pool.pt")  # another pool: encoded, not reused
    assert len(other.pool_z) == 6
    (tmp_path / "pool.pt").write_bytes(b"truncated")
    assert torch.equal(LDMTask(replace(cfg, pool=5), src, cache=tmp_path / "pool.pt").pool_z, first.pool_z)


def test_caption_dropout_and_cache():
    from pixdiff.ldm.text import CaptionStates

    te = TextEncoder()
    cs = CaptionStates(te, dropout=0.3)
    states = cs(["two red circles"] * 1000, torch.Generator().manual_seed(0))
    empty = sum(s.shape[0] == 2 for s in states)  # CLS SEP only
    assert 250 < empty < 350 and len(cs._states) == 2
    cached = states[0] if states[0].shape[0] == 5 else states[1]
    assert torch.allclose(cached, te.encode(["two red circles"])[0], atol=1e-5)  # batched with padding: ~equal
