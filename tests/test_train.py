"""The training loop: the loss goes down, a killed run resumes to exactly the same weights, bad resumes refused."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pixdiff import InputError, load_latent_source
from pixdiff.train.loop import train
from pixdiff.train.vae import TRAIN_PRESETS, VAETask


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        yy, xx = np.mgrid[0:48, 0:48]
        arr = np.stack([128 + 100 * np.sin(xx / (3 + i)), 128 + 100 * np.cos(yy / 4), 90 + 0 * xx], -1)
        Image.fromarray(np.clip(arr + rng.normal(0, 5, arr.shape), 0, 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


class Killed(Exception):
    pass


def kill():
    raise Killed


def sigterm():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would


class InterruptedAt(VAETask):
    """Runs `action` while building batch number `at` (counting from 1)."""
    def __init__(self, *a, at: int, action):
        super().__init__(*a)
        self.calls, self.at, self.action = 0, at, action

    def batch(self, n, g):
        self.calls += 1
        if self.calls == self.at:
            self.action()
        return super().batch(n, g)


def tiny(steps=6):
    cfg, opt = TRAIN_PRESETS["tiny"]
    return cfg, replace(opt, steps=steps, checkpoint_minutes=0.0, log_every=1)


def test_loss_decreases_and_weights_load_as_a_latent_source(folder, tmp_path):
    cfg, opt = tiny(40)
    torch.manual_seed(0)
    train(VAETask(cfg, folder), replace(opt, lr=1e-3, warmup=5), tmp_path / "run", progress=False)
    log = [json.loads(l)["loss"] for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert np.mean(log[-8:]) < 0.8 * np.mean(log[:8])
    src = load_latent_source(tmp_path / "run" / "weights")
    assert src.channels == 16 and src.factor == 8
    z = src.encode(torch.zeros(1, 3, 32, 32))
    assert z.shape == (1, 16, 4, 4) and torch.isfinite(z).all()


def test_killed_run_resumes_exactly(folder, tmp_path):
    cfg, opt = tiny(6)
    torch.manual_seed(0)
    train(VAETask(cfg, folder), opt, tmp_path / "straight", progress=False)
    torch.manual_seed(0)
    with pytest.raises(Killed):
        train(InterruptedAt(cfg, folder, at=5, action=kill), opt, tmp_path / "killed", progress=False)
    with pytest.raises(InputError, match="already holds a training run"):
        train(VAETask(cfg, folder), opt, tmp_path / "killed", progress=False)
    torch.manual_seed(123)  # a different initialisation: resume must overwrite it from the checkpoint
    train(VAETask(cfg, folder), opt, tmp_path / "killed", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_sigterm_finishes_the_step_checkpoints_and_resume_matches(folder, tmp_path):
    import signal

    cfg, opt = tiny(6)
    torch.manual_seed(0)
    train(VAETask(cfg, folder), opt, tmp_path / "straight", progress=False)
    torch.manual_seed(0)
    before = signal.getsignal(signal.SIGTERM)
    task = InterruptedAt(cfg, folder, at=3, action=sigterm)
    summary = train(task, opt, tmp_path / "stopped", progress=False)
    assert summary["stopped"] and summary["steps"] == 3 and summary["weights"] is None
    assert not (tmp_path / "stopped" / "weights").exists() and signal.getsignal(signal.SIGTERM) == before
    train(VAETask(cfg, folder), opt, tmp_path / "stopped", resume=True, progress=False)
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_time_limit_exports_the_step_reached_and_resume_keeps_the_schedule(folder, tmp_path):
    cfg, opt = tiny(6)
    torch.manual_seed(0)
    train(VAETask(cfg, folder), opt, tmp_path / "straight", progress=False)
    torch.manual_seed(0)
    summary = train(VAETask(cfg, folder), opt, tmp_path / "timed", progress=False, max_minutes=1e-9)
    assert summary["time_limited"] and summary["steps"] == 1
    assert (tmp_path / "timed" / "weights" / "config.json").exists()  # usable weights at the limit
    out = train(VAETask(cfg, folder), opt, tmp_path / "timed", resume=True, progress=False)
    assert out["steps"] == 6 and not out["time_limited"]
    a = torch.load(tmp_path / "straight" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "timed" / "state.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resume_refuses_other_config_or_missing_state(folder, tmp_path):
    cfg, opt = tiny(2)
    train(VAETask(cfg, folder), opt, tmp_path / "r", config={"preset": "tiny"}, progress=False)
    with pytest.raises(InputError, match="different configuration"):
        train(VAETask(cfg, folder), opt, tmp_path / "r", resume=True, config={"preset": "small"}, progress=False)
    with pytest.raises(InputError, match="no training state"):
        train(VAETask(cfg, folder), opt, tmp_path / "empty", resume=True, progress=False)


def test_a_finished_run_can_be_extended(folder, tmp_path):
    cfg, opt = tiny(2)
    conf = lambda o: {"preset": "tiny", "optim": {"steps": o.steps, "lr": o.lr}}  # noqa: E731
    train(VAETask(cfg, folder), opt, tmp_path / "r", config=conf(opt), progress=False)
    longer = replace(opt, steps=4)
    out = train(VAETask(cfg, folder), longer, tmp_path / "r", resume=True, config=conf(longer), progress=False)
    assert out["steps"] == 4
    with pytest.raises(InputError, match="only --steps may grow"):
        other = replace(longer, lr=1.0)
        train(VAETask(cfg, folder), other, tmp_path / "r", resume=True, config=conf(other), progress=False)


def test_one_training_process_per_run_folder(tmp_path):
    import os
    import subprocess
    import sys

    from pixdiff.errors import InputError
    from pixdiff.train.checkpoint import run_lock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "run.lock").write_text(str(sleeper.pid))
        with pytest.raises(InputError, match=f"in use by another training process \\(pid {sleeper.pid}\\)"):
            with run_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with run_lock(tmp_path):  # the holder is gone: a stale lock is taken over
        assert (tmp_path / "run.lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run.lock").exists()


def test_a_run_may_resume_in_another_precision(folder, tmp_path):
    cfg, opt = tiny(2)
    conf = lambda o: {"preset": "tiny", "optim": {"steps": o.steps, "bf16": o.bf16}}  # noqa: E731
    bf16 = replace(opt, bf16=True)
    train(VAETask(cfg, folder), bf16, tmp_path / "r", config=conf(bf16), progress=False)
    fp32 = replace(opt, steps=3, bf16=False)  # moved to a machine without native bf16
    assert train(VAETask(cfg, folder), fp32, tmp_path / "r", resume=True, config=conf(fp32), progress=False)["steps"] == 3
