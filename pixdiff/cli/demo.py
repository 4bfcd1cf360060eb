"""`pixdiff demo`: the story so far on the shipped weights, in a few minutes on a CPU."""
from __future__ import annotations

import os
from pathlib import Path

from pixdiff.cli.common import add_common, default_photos, emit, note


def register(sub) -> None:
    p = sub.add_parser("demo", help="latent round trips on held-out photos with the shipped weights",
                       description="Round-trip 256x256 crops of held-out photos through every available latent "
                                   "source (vae-f8c16 always; taef2 when its weights are found), write the crops, "
                                   "the reconstructions and a side-by-side sheet, and print the metrics.")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    p.add_argument("--data", nargs="+", type=Path, help="image folders (default: ../shared/data/photos/val)")
    p.add_argument("--size", type=int, default=256, help="crop size (default 256)")
    p.add_argument("--taef2", type=Path, default=os.environ.get("PIXDIFF_TAEF2"),
                   help="TAEF2 weights folder (default: $PIXDIFF_TAEF2; skipped when absent)")
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from pixdiff.data.crops import eval_crops
    from pixdiff.data.images import save_image
    from pixdiff.eval.roundtrip import evaluate_roundtrip
    from pixdiff.eval.sheet import image_sheet
    from pixdiff.latents import load_latent_source

    torch.manual_seed(args.seed)
    crops, names = eval_crops(args.data or default_photos("val"), args.size, per_image=2, seed=args.seed)
    sources = [load_latent_source("vae-f8c16")]
    if args.taef2:
        sources.append(load_latent_source("taef2", weights=args.taef2))
    else:
        note("taef2 skipped: no weights (set PIXDIFF_TAEF2 or pass --taef2 DIR)")
    results, columns = {}, {"input": crops}
    for src in sources:
        r = evaluate_roundtrip(src, crops, names, progress=not args.json)
        columns[src.name] = r.pop("recon")
        results[src.name] = r
    for col, images in columns.items():
        for name, im in zip(names, images):
            save_image(im, args.out / col / f"{name}.png")
    sheet = image_sheet(columns, names, args.out / "sheet.png")
    lines = [f"{len(crops)} crops of {args.size}^2 from {len(crops) // 2} held-out photos -> {args.out}/", ""]
    lines += [f"{'source':12s} {'PSNR dB':>8s} {'SSIM':>7s} {'MS-SSIM':>8s} {'CIEDE2000':>10s}"]
    for name, r in results.items():
        m = r["mean"]
        lines.append(f"{name:12s} {m['psnr']:8.2f} {m['ssim']:7.4f} {m['ms_ssim']:8.4f} {m['ciede2000']:10.2f}")
    lines += ["", f"side by side: {sheet}"]
    emit(args, {"out": str(args.out), "sheet": str(sheet), "roundtrip": results}, "\n".join(lines))
    return 0
