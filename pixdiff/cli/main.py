"""`pixdiff <command>`: the command-line entry point. Errors in user input are one line and exit 2."""
from __future__ import annotations

import argparse
import os
import sys

from pixdiff.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    from pixdiff.cli import (bench, configure, decode, demo, evaluate, generate, info, roundtrip, train, transfer,
                             upscale)

    p = argparse.ArgumentParser(prog="pixdiff", description="Pixel-space diffusion on top of latent image models.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (info, roundtrip, train, upscale, decode, configure, generate, transfer, evaluate, bench, demo):
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("PIXDIFF_THREADS", min(os.cpu_count() or 1, 8))))
    try:
        return args.func(args)
    except InputError as e:
        print(f"pixdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixdiff {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
