"""`pixdiff encode IMAGE... --source S --out DIR` and `pixdiff decode LATENTS... --decoder D --out DIR`.

A latents file is a safetensors file with one tensor "latents" (B, C, h, w) and the source's name in its metadata.
"""
from __future__ import annotations

from pathlib import Path

from pixdiff.cli.common import add_common, emit, note, show_progress
from pixdiff.cli.upscale import add_decoding_options


def register(sub) -> None:
    p = sub.add_parser("encode", help="encode images into latents files",
                       description="Encode each image with a latent source; writes OUT/<stem>.safetensors holding "
                                   "'latents' (1, C, h, w) and the source's name. Sizes are centre-cropped to a "
                                   "multiple of the latent factor.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--source", default="vae-f8c16", help="latent source name or path (default: vae-f8c16)")
    p.add_argument("--weights", type=Path, help="weights folder for sources that need one (taef2)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_common(p, progress=False)
    p.set_defaults(func=run_encode)

    p = sub.add_parser("decode", help="decode latents files with PiD",
                       description="Decode latents files (from `pixdiff encode`, or your own latent generator) with a "
                                   "PiD decoder; --sigma gives their noise level when they are only partly denoised. "
                                   "Writes OUT/<stem>.png (OUT/<stem>-<i>.png for batches).")
    p.add_argument("latents", nargs="+", type=Path, metavar="LATENTS", help=".safetensors files with 'latents'")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_decoding_options(p)
    add_common(p)
    p.set_defaults(func=run_decode)


def read_latents(path: Path):
    from safetensors import SafetensorError, safe_open

    from pixdiff.errors import InputError

    if not path.exists():
        raise InputError(f"no such latents file: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            if "latents" not in f.keys():
                raise InputError(f"{path}: no tensor named 'latents' (found {', '.join(f.keys()) or 'none'})")
            z, meta = f.get_tensor("latents"), f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise InputError(f"{path}: not a readable safetensors file ({e})") from None
    return (z.unsqueeze(0) if z.ndim == 3 else z).float(), meta.get("source")


def run_encode(args) -> int:
    import torch
    from pixdiff.cli.roundtrip import check_unique_stems
    from pixdiff.data.images import load_image, to_float
    from pixdiff.latents import crop_to_multiple, load_latent_source
    from pixdiff.release import save_safetensors

    check_unique_stems(args.images)
    source = load_latent_source(args.source, weights=args.weights)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in args.images:
        x, cropped = crop_to_multiple(to_float(load_image(path).pixels).unsqueeze(0), source.factor)
        if cropped:
            note(f"{path.name}: centre-cropped to {x.shape[-1]}x{x.shape[-2]} (a multiple of {source.factor})")
        with torch.no_grad():
            z = source.encode(x).contiguous()
        dst = args.out / f"{path.stem}.safetensors"
        save_safetensors({"latents": z}, dst, metadata={"source": source.name})
        results.append({"input": str(path), "output": str(dst), "shape": list(z.shape)})
    emit(args, {"source": source.name, "latents": results},
         "\n".join(f"{Path(r['input']).name} -> {r['output']} {tuple(r['shape'])}" for r in results))
    return 0


def run_decode(args) -> int:
    import torch

    from pixdiff.cli.roundtrip import check_unique_stems
    from pixdiff.data.images import save_image
    from pixdiff.decoder import load_decoder
    from pixdiff.errors import InputError

    check_unique_stems(args.latents)
    dec = load_decoder(args.decoder)
    results = []
    for path in args.latents:
        z, source = read_latents(path)
        if source is not None and source != dec.source["name"]:
            raise InputError(f"{path} holds latents of {source!r}, but {dec.name} decodes {dec.source['name']!r} "
                             "latents")
        g = torch.Generator().manual_seed(args.seed)
        y = dec.decode(z, sigma=args.sigma, steps=args.steps, sampler=args.sampler, generator=g,
                       progress=show_progress(args), prompt=args.prompt, guidance=args.guidance,
                       temperature=args.temperature, latent_guidance=args.latent_guidance,
                       back_projection=args.back_projection)
        for i, im in enumerate(y):
            dst = save_image(im, args.out / (f"{path.stem}.png" if len(y) == 1 else f"{path.stem}-{i}.png"))
            results.append({"input": str(path), "output": str(dst), "size": [im.shape[-1], im.shape[-2]]})
    emit(args, {"decoder": dec.name, "images": results},
         "\n".join(f"{Path(r['input']).name} -> {r['output']}" for r in results))
    return 0
