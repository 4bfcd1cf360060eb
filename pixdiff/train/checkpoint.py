"""Training state: everything needed to resume (model, EMA, optimizer, step), written atomically.

Release weights are a different thing (config.json + safetensors, see `pixdiff.weights`); this file is only
for resuming. It holds tensors and plain Python values, so it loads with `weights_only=True` (no unpickling of code).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from pixdiff.errors import InputError

STATE_FILE = "state.pt"


def save_state(state: dict, out_dir: str | Path) -> Path:
    """Write `state` to OUT/state.pt through a temporary file + rename, so a kill never leaves half a file."""
    path = Path(out_dir) / STATE_FILE
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(out_dir: str | Path) -> dict:
    path = Path(out_dir) / STATE_FILE
    if not path.exists():
        raise InputError(f"--resume: no training state at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise InputError(f"cannot read training state {path}: {e.__class__.__name__}: {e}") from None


@contextlib.contextmanager
def run_lock(out: Path):
    """One training process per run folder: a second one fails at once instead of interleaving checkpoints.
    A lock left by a process that no longer exists (killed) is taken over."""
    lock = Path(out) / "run.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            text = lock.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            try:
                alive = pid > 0 and (os.kill(pid, 0) is None)
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
            if alive:
                raise InputError(f"{out} is in use by another training process (pid {pid}); wait for it or stop it")
            lock.unlink(missing_ok=True)
    else:
        raise InputError(f"could not lock {out}")
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
