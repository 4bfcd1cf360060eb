"""Release weights: a folder with config.json + *.safetensors (diffusers-style), never pickles.

Training state lives elsewhere (`pixdiff.train.checkpoint`). Models trained on a latent space record it in their
config as `latent_source` (name, channels, factor), and loading them next to another source fails with both named.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixdiff.errors import InputError

WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def save_release(state_dict: dict[str, torch.Tensor], config: dict, folder: str | Path,
                 dtype: torch.dtype = torch.float16) -> Path:
    """Write config.json and model.safetensors (floating tensors cast to dtype; the config also goes into the
    safetensors metadata so a lone file still says what it is)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in state_dict.items()}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_safetensors(tensors, folder / WEIGHTS_FILE, metadata={"config": json.dumps(config)})
    return folder


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """safetensors.save_file, then the permissions any other new file gets (it writes 0600, which breaks weights
    shared between users or copied into a container running as another user)."""
    save_file(tensors, path, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def load_release(folder: str | Path, kind: str | None = None, allow_pickle: bool = False,
                 ) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read (config, state_dict) from a release folder. `kind` checks config["kind"] (e.g. "pid-decoder").
    Pickled weights (.pt/.bin/...) are refused unless allow_pickle=True, and even then loaded with weights_only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no such weights folder: {folder}")
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise InputError(f"{folder}: no config.json (release weights are a folder with config.json + safetensors)")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{cfg_file}: not valid JSON ({e})") from None
    if kind is not None and config.get("kind") != kind:
        raise InputError(f"{folder} holds a {config.get('kind', 'unknown kind of')} model, not a {kind}")
    files = sorted(folder.glob("*.safetensors"))
    if files:
        state = {}
        for f in files:
            try:
                state.update(load_file(f))
            except (SafetensorError, OSError) as e:
                raise InputError(f"{f}: corrupt or unreadable safetensors file ({e})") from None
        return config, state
    pickles = [f for f in folder.iterdir() if f.suffix in PICKLE_SUFFIXES]
    if not pickles:
        raise InputError(f"{folder}: no *.safetensors weights")
    if not allow_pickle:
        raise InputError(f"{folder}: only pickled weights ({pickles[0].name}); pixdiff does not unpickle unless you "
                         "opt in (allow_pickle=True / --allow-pickle)")
    state = {}
    for f in pickles:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return config, state


def _named_parts(folder: str | Path) -> tuple[str, ...]:
    """A release folder's path parts, ending at the run's folder for a run's `weights/` folder."""
    folder = Path(folder).resolve()
    return folder.parent.parts if folder.name == "weights" else folder.parts


def display_name(folder: str | Path) -> str:
    """What tables and logs call a release folder: its name, or the run's name for a run's `weights/` folder."""
    return _named_parts(folder)[-1]


def distinct_names(folders: list) -> list[str]:
    """display_name of each folder, with as many parent folders as it takes to tell them apart (a table has one
    column per model): runs/s2/student/weights and runs/s3/student/weights -> s2/student and s3/student."""
    parts = [_named_parts(f) for f in folders]
    depth = 1
    while len({p[-depth:] for p in parts}) < len(parts) and depth < max(map(len, parts)):
        depth += 1
    return ["/".join(p[-depth:]) for p in parts]


def source_signature(source) -> dict:
    """What a model trained on `source`'s latents records about it."""
    return {"name": source.name, "channels": source.channels, "factor": source.factor}


def check_latent_source(config: dict, source, model_name: str = "this model") -> None:
    """Fail, naming both, when a model trained on one latent space is paired with another."""
    want = config.get("latent_source")
    if want is None:
        return
    have = source_signature(source)
    if want != have:
        raise InputError(f"{model_name} was trained on latents of {want['name']!r} ({want['channels']} channels, "
                         f"{want['factor']}x) but the latent source is {have['name']!r} ({have['channels']} "
                         f"channels, {have['factor']}x)")
