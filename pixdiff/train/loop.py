"""The training loop shared by every `pixdiff train <model>`.

A task supplies the model, a batch for a step and a per-sample loss; the loop owns the optimizer (AdamW with linear
warm-up), gradient clipping, EMA, bf16 autocast, the progress bar, the loss log and atomic checkpoints. All
randomness of step k comes from generators seeded by (seed, k), so `--resume` continues the same run exactly.
SIGTERM or Ctrl-C (SIGINT) stops a run cleanly: the current step finishes, a checkpoint is written, nothing is
exported, and `--resume` goes on from there. A time limit (`max_minutes`) ends a run early the same way but exports
the weights reached so far. The loop runs where the task's model lives (CPU or CUDA); the task's batches come on
the same device, drawn from CPU generators, so a run draws the same data and noise on either.
"""
from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

from pixdiff.data.crops import step_generator
from pixdiff.errors import InputError
from pixdiff.train.checkpoint import load_state, run_lock, save_state
from pixdiff.train.ema import EMA

# RMSNorm without weights under bf16 autocast falls back to the unfused kernel and says so on every call.
warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")


@dataclass
class OptimConfig:
    steps: int = 1000
    batch: int = 8
    lr: float = 2e-4
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = True  # bf16 autocast where it is fast (see bf16_is_fast); the CLI resolves it per machine
    cosine: bool = True  # cosine decay to lr/10 after warm-up
    log_every: int = 10
    checkpoint_minutes: float = 5.0
    seed: int = 0


class Task(Protocol):
    model: nn.Module

    def batch(self, n: int, generator: torch.Generator): ...

    def loss(self, model: nn.Module, batch, generator: torch.Generator) -> tuple[torch.Tensor, dict]: ...

    def export(self, model: nn.Module, out_dir: Path) -> None: ...


def learning_rate(cfg: OptimConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if not cfg.cosine:
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _run_identity(config: dict) -> dict:
    """The configuration a resumed run must match: everything but the step count, which may grow to extend a
    finished run (the cosine schedule is then stretched over the new total: a warm restart), and the precision,
    which belongs to the machine (a run may move to one without fast bf16)."""
    return {**config, "optim": {k: v for k, v in config.get("optim", {}).items() if k not in ("steps", "bf16")}}


def train(task: Task, cfg: OptimConfig, out_dir: str | Path, resume: bool = False, config: dict | None = None,
          progress: bool = True, max_minutes: float | None = None) -> dict:
    """Run (or continue) training into out_dir; export the EMA weights at the end. Returns a summary dict.
    max_minutes: end this invocation after that long, exporting the weights of the step reached (the schedule is
    not shortened: `resume` goes on towards cfg.steps)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out), _stop_requests() as stop:
        return _train(task, cfg, out, resume, config, progress, stop, max_minutes)


@contextlib.contextmanager
def _stop_requests():
    """A flag set by SIGTERM / SIGINT while training (main thread only; elsewhere signals keep their handlers)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up on `device`. CUDA: GPUs with bf16 units. CPU: only where oneDNN
    has native bf16 paths (AVX-512 or AMX); elsewhere it is emulated, and training ran 14-20x slower than fp32 on
    an AVX2-only CPU (docs/benchmarks.md, "Training precision")."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _train(task: Task, cfg: OptimConfig, out: Path, resume: bool, config: dict | None, progress: bool,
           stop: threading.Event, max_minutes: float | None) -> dict:
    model = task.model
    device = next(model.parameters()).device
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    ema = EMA(model, cfg.ema_decay)
    step, elapsed = 0, 0.0
    if resume:
        state = load_state(out)
        if _run_identity(state["config"]) != _run_identity(config or {}):
            raise InputError(f"--resume: the run in {out} was started with a different configuration; "
                             "use the same preset and options (only --steps may grow), or a new --out")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed_s"]
    elif (out / "state.pt").exists():
        raise InputError(f"{out} already holds a training run: pass --resume to continue it, or choose a new --out")
    (out / "config.json").write_text(json.dumps(config or {}, indent=2))

    def checkpoint():
        save_state({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                    "step": step, "elapsed_s": elapsed, "config": config or {}}, out)

    log = open(out / "log.jsonl", "a")
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train", dynamic_ncols=True)
    last_ckpt, t0, running = time.time(), time.time() - elapsed, None
    deadline = time.time() + max_minutes * 60 if max_minutes else math.inf
    model.train()
    while step < cfg.steps:
        g = step_generator(cfg.seed, step)
        batch = task.batch(cfg.batch, g)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        with autocast(device, cfg.bf16):
            loss, stats = task.loss(model, batch, g)
        if not torch.isfinite(loss):
            checkpoint()
            raise RuntimeError(f"non-finite loss at step {step}; state saved in {out} (lower --lr or disable bf16)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model, step)
        step += 1
        elapsed = time.time() - t0
        lv = float(loss.detach())
        running = lv if running is None else 0.98 * running + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            rec = {"step": step, "loss": lv, "grad_norm": float(gnorm), "lr": learning_rate(cfg, step - 1),
                   "elapsed_s": round(elapsed, 1), **{k: float(v) for k, v in stats.items()}}
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
        if stop.is_set() or time.time() > deadline:
            break
    bar.close()
    log.close()
    checkpoint()
    summary = {"steps": step, "elapsed_s": round(elapsed, 1), "final_loss_ema": running}
    if step < cfg.steps and stop.is_set():  # stopped by a signal
        return {**summary, "stopped": True, "weights": None}
    task.export(ema.model, out / "weights")
    return {**summary, "time_limited": step < cfg.steps, "weights": str(out / "weights")}
