"""`pixdiff roundtrip IMAGE... --source S --out DIR`: encode -> decode with a latent source, with metrics."""
from __future__ import annotations

from pathlib import Path

from pixdiff.cli.common import add_common, emit, note

MAX_PIXELS = 2048 * 2048


def register(sub) -> None:
    p = sub.add_parser("roundtrip", help="encode -> decode images with a latent source, with metrics",
                       description="Encode each image with a latent source and decode it back. Writes OUT/<stem>.png "
                                   "for each input and reports PSNR / SSIM / MS-SSIM / CIEDE2000 against the input.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("--source", default="vae-f8c16", help="latent source name or path (default: vae-f8c16)")
    p.add_argument("--weights", type=Path, help="weights folder for sources that need one (taef2)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_common(p, progress=False)
    p.set_defaults(func=run)


def check_unique_stems(paths: list[Path]) -> None:
    from pixdiff.errors import InputError

    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise InputError(f"{seen[p.stem]} and {p} would both be written as {p.stem}.png; rename one")
        seen[p.stem] = p


def roundtrip_one(source, path: Path, out: Path) -> dict:
    import torch

    from pixdiff.data.images import load_image, save_image, to_float
    from pixdiff.errors import InputError
    from pixdiff.eval import metrics
    from pixdiff.latents import crop_to_multiple

    im = load_image(path)
    if im.note:
        note(f"{path.name}: {im.note}")
    x = to_float(im.pixels).unsqueeze(0)  # (1, 3, H, W)
    if x.shape[-1] * x.shape[-2] > MAX_PIXELS:
        raise InputError(f"{path}: {x.shape[-1]}x{x.shape[-2]} is above the {MAX_PIXELS // 2**20} MP limit of a "
                         "whole-image round trip on this machine; downscale or crop it first")
    x, cropped = crop_to_multiple(x, source.factor)
    if cropped:
        note(f"{path.name}: centre-cropped to {x.shape[-1]}x{x.shape[-2]} (a multiple of {source.factor})")
    with torch.no_grad():
        z = source.encode(x)
        y = source.decode(z)
    dst = save_image(y[0], out / f"{path.stem}.png")
    return {"input": str(path), "output": str(dst), "size": [x.shape[-1], x.shape[-2]],
            "latent_shape": list(z.shape[1:]), "psnr": float(metrics.psnr(y, x)[0]),
            "ssim": float(metrics.ssim(y, x)[0]), "ms_ssim": float(metrics.ms_ssim(y, x)[0]),
            "ciede2000": float(metrics.ciede2000(y, x)[0]), "note": im.note, "cropped": cropped}


def run(args) -> int:
    import torch

    from pixdiff.latents import load_latent_source

    torch.manual_seed(args.seed)
    check_unique_stems(args.images)
    source = load_latent_source(args.source, weights=args.weights)
    results = [roundtrip_one(source, p, args.out) for p in args.images]
    lines = [f"{Path(r['input']).name}: PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.4f}  "
             f"CIEDE2000 {r['ciede2000']:.2f}  -> {r['output']}" for r in results]
    emit(args, {"source": source.name, "images": results}, "\n".join(lines))
    return 0
