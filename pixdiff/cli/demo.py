"""`pixdiff demo`: the story so far on the shipped weights, in a few minutes on a CPU."""
from __future__ import annotations

import os
from pathlib import Path

from pixdiff.cli.common import add_common, default_photos, emit, note, show_progress


def register(sub) -> None:
    p = sub.add_parser("demo", help="latent round trips on held-out photos with the shipped weights",
                       description="Round-trip 256x256 crops of held-out photos through every available latent "
                                   "source (vae-f8c16 always; taef2 when its weights are found), write the crops, "
                                   "the reconstructions and a side-by-side sheet, and print the metrics.")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default: demo-out)")
    p.add_argument("--data", nargs="+", type=Path, help="image folders (default: ../shared/data/photos/val)")
    p.add_argument("--size", type=int, default=256, help="crop size (default 256)")
    p.add_argument("--steps", type=int, default=10, help="PiD sampling steps in the demo (default 10)")
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
        r = evaluate_roundtrip(src, crops, names, progress=show_progress(args))
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
    pid = pid_demo(args, crops, names, {s.name: s for s in sources})
    for name, r in pid.items():
        lines += ["", f"{name}: {args.size // 4}^2 -> {args.size}^2 from {r['source']} latents ({args.steps} steps), "
                      f"side by side: {r['sheet']}",
                  f"{'method':22s} {'PSNR':>6s} {'LQ PSNR':>8s} {'HF |log2|':>10s} {'HF corr':>8s} {'s/img':>6s}"]
        for m, v in r["methods"].items():
            lines.append(f"{m:22s} {v['psnr']:6.2f} {v['lq_psnr']:8.2f} {v['hf_log2_distance']:10.2f} "
                         f"{v['hf_correlation']:8.3f} {v['seconds_per_image']:6.2f}")
    emit(args, {"out": str(args.out), "sheet": str(sheet), "roundtrip": results, "pid": pid}, "\n".join(lines))
    return 0


def pid_demo(args, crops, names, sources: dict) -> dict:
    """PiD 4x decoding of the crops' 4x-smaller versions, for each shipped decoder whose latent source is here."""
    from pixdiff.decoder import load_decoder
    from pixdiff.eval.decode import build_methods, evaluate_decode
    from pixdiff.eval.sheet import image_sheet
    from pixdiff.latents.registry import WEIGHTS_DIR, shipped

    out = {}
    for folder in sorted(WEIGHTS_DIR.glob("pid-*")):
        dec = load_decoder(folder) if shipped(folder.name) else None
        if dec is None or dec.source["name"] not in sources:
            continue
        src = sources[dec.source["name"]]
        methods = build_methods(src, dec, steps=args.steps, sigmas=())
        r = evaluate_decode(src, methods, crops, names, dec.cfg.scale, seed=args.seed, progress=show_progress(args))
        outputs = r.pop("outputs")
        cols = {"HQ": crops, **{k.split(" ")[0]: v for k, v in outputs.items()}}
        r.pop("lq")
        r["sheet"] = str(image_sheet(cols, names, args.out / f"{folder.name}.png", max_rows=6))
        out[folder.name] = r
    return out
