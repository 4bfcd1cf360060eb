"""Training state: everything needed to resume (model, EMA, optimizer, step), written atomically.

Release weights are a different thing (config.json + safetensors, see `pixdiff.weights`); this file is only
for resuming. It holds tensors and plain Python values, so it loads with `weights_only=True` (no unpickling of code).
"""
from __future__ import annotations

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
