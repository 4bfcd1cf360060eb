"""`pixdiff generate --model M --prompt P --n N --out DIR`: text -> latents -> pixels (VAE or PiD)."""
from __future__ import annotations

import re
from pathlib import Path

from pixdiff.cli.common import add_common, add_device, compute_device, emit, note, show_progress


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate images from text prompts",
                       description="Sample N images per prompt with a generator (ldm-shapes, or a folder), decode them "
                                   "with the latent source's decoder or with a PiD decoder (--decoder), and write "
                                   "OUT/<prompt>-<i>.png. --stop-at K hands PiD the latent after K of the steps, "
                                   "with its noise level (early termination).")
    p.add_argument("--model", required=True, help="generator: shipped name (ldm-shapes) or folder")
    p.add_argument("--prompt", action="append", required=True, help="text prompt (repeat for several; '' = "
                                                                    "unconditional)")
    p.add_argument("--n", type=int, default=1, help="images per prompt (default 1)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (default: the model's; 1 = off)")
    p.add_argument("--eta", type=float, help="stochasticity in [0, 1]: fresh noise at each step as a share of DDPM's "
                                             "(default: the model's; 0: the deterministic ODE, 1: ancestral)")
    p.add_argument("--decoder", default="vae", help="'vae' (the latent source's decoder) or a PiD decoder")
    p.add_argument("--stop-at", type=int, help="with a PiD decoder: stop the generator after K steps")
    p.add_argument("--decoder-steps", type=int, help="PiD sampling steps (default: the decoder's, 12)")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_device(p, "sample (the PiD decoder, if any, runs on the CPU)")
    add_common(p)
    p.set_defaults(func=run)


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "unconditional"


def run(args) -> int:
    from dataclasses import replace

    import torch

    from pixdiff.data.images import save_image
    from pixdiff.errors import InputError
    from pixdiff.ldm.generator import check_sampling, load_generator

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    check_sampling(steps=args.steps, cfg=args.cfg, eta=args.eta)
    gen = load_generator(args.model).to(compute_device(args.device))
    if args.eta is not None:
        gen.cfg = replace(gen.cfg, eta=args.eta)
    decoder = None
    if args.decoder != "vae":
        from pixdiff.decoder import load_decoder
        decoder = load_decoder(args.decoder).to(gen.device)
    for p in args.prompt:
        if not p.strip():
            note("empty prompt: unconditional generation")
    jobs = [(p, i) for p in args.prompt for i in range(args.n)]
    g = torch.Generator().manual_seed(args.seed)
    results = []
    for k in range(0, len(jobs), args.batch):
        chunk = jobs[k : k + args.batch]
        images = gen.generate([p for p, _ in chunk], steps=args.steps, cfg=args.cfg, generator=g, decoder=decoder,
                              stop_at=args.stop_at, decoder_steps=args.decoder_steps, progress=show_progress(args))
        for (p, i), im in zip(chunk, images):
            dst = save_image(im, args.out / f"{slug(p)}-{i}.png")
            results.append({"prompt": p, "output": str(dst)})
    via = None if gen.pixel else args.decoder  # an L2P student makes pixels itself
    sampling = {**gen.cfg.sampling(args.steps, args.cfg), "seed": args.seed}  # what made these images
    emit(args, {"model": gen.name, "decoder": via, "sampling": sampling, "images": results},
         f"{len(results)} images from {gen.name} ({via or 'pixels'}; "
         + ", ".join(f"{k} {v:g}" for k, v in sampling.items()) + f") -> {args.out}/")
    return 0
