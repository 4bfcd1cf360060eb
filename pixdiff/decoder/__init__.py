"""Decoders that turn latents into pixels: PiD (`load_decoder`)."""
from __future__ import annotations

from pathlib import Path

from pixdiff.decoder.pid import KIND, PiD, PiDConfig, PiDDecoder
from pixdiff.errors import InputError
from pixdiff.latents.registry import shipped
from pixdiff.release import display_name, load_release, save_release


def save_decoder(model: PiD, folder: str | Path, **extra) -> Path:
    return save_release(model.state_dict(), {**model.cfg.to_dict(), **extra}, folder)


def load_decoder(name_or_path: str | Path) -> PiDDecoder:
    """A PiD decoder by shipped name (e.g. "pid-f8c16-x4-teacher"), release folder, or training run folder (its
    current EMA weights)."""
    folder = shipped(str(name_or_path)) or Path(name_or_path)
    if not folder.exists():
        raise InputError(f"no decoder {str(name_or_path)!r}: not a shipped name and not a folder")
    if (folder / "state.pt").exists():
        from pixdiff.train.pid import load_run
        return load_run(folder)
    config, state = load_release(folder, kind=KIND)
    try:
        model = PiD(PiDConfig.from_dict(config))
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (TypeError, KeyError, RuntimeError) as e:
        raise InputError(f"{folder}: the weights do not match their config.json ({str(e).splitlines()[0]})") from None
    return PiDDecoder(model, name=display_name(folder))


__all__ = ["PiD", "PiDConfig", "PiDDecoder", "load_decoder", "save_decoder"]
