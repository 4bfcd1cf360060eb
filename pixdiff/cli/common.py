"""What every command shares: --json / --seed, one-line errors, where the shared data lives."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def add_common(p: argparse.ArgumentParser, seed: int | None = 0, progress: bool = True) -> None:
    """--json, --seed with this default (None: the command draws nothing at random, so it has no --seed), and
    --no-progress where the command has long work (progress=True)."""
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="machine-readable result: on stdout, or into FILE when one is given")
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="hide the progress bars (for logs; --json without FILE hides them too)")
    if seed is not None:
        p.add_argument("--seed", type=int, default=seed,
                       help=f"random seed (default {seed}); the same seed reproduces the output")


def show_progress(args) -> bool:
    """Progress bars (on stderr) unless --no-progress, or --json puts the result on stdout."""
    return not args.no_progress and args.json != "-"


def emit(args, result: dict, human: str | None = None) -> None:
    """Print the result: JSON on stdout with --json, else a human summary (and JSON into FILE with --json FILE)."""
    if args.json == "-":
        print(json.dumps(result, indent=2, default=str))
        return
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if human is not None:
        print(human)


def note(msg: str) -> None:
    """A remark for the user on stderr (keeps --json stdout clean)."""
    print(msg, file=sys.stderr)


def default_photos(split: str) -> list[Path]:
    """../shared/data/photos/<split> next to the checkout, or $PIXDIFF_DATA/<split>."""
    root = Path(os.environ.get("PIXDIFF_DATA", Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"))
    return [root / s for s in split.split("+")]


def add_device(p: argparse.ArgumentParser, what: str = "run") -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help=f"where to {what} (auto: CUDA when there is a GPU, else CPU)")


def compute_device(choice: str) -> str:
    """--device auto|cpu|cuda -> 'cpu' or 'cuda' (auto: CUDA when this torch build sees a GPU)."""
    import torch

    from pixdiff.errors import InputError

    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to this torch build")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":  # TF32 for what autocast leaves in fp32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return choice
