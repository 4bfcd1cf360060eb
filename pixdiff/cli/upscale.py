"""`pixdiff upscale IMAGE... --decoder D --out DIR`: image -> latent -> PiD at `scale` times the input size."""
from __future__ import annotations

from pathlib import Path

from pixdiff.cli.common import add_common, emit, note, show_progress

MAX_OUTPUT_PIXELS = 2048 * 2048


def add_decoding_options(p) -> None:
    p.add_argument("--decoder", required=True, help="PiD decoder: shipped name (pid-f8c16-x4-teacher) or folder")
    p.add_argument("--steps", type=int,
                   help="sampling steps (network evaluations with euler; default: the decoder's, 12)")
    p.add_argument("--sampler", default="euler", choices=["euler", "heun", "x0-renoise"], help="ODE sampler")
    p.add_argument("--temperature", type=float,
                   help="scale of the starting noise (default: the decoder's own, 1 unless `pixdiff configure` set "
                        "it; lower invents less detail, higher fidelity)")
    p.add_argument("--latent-guidance", type=float,
                   help="guidance against the latent-dropped model (default: the decoder's own, 1 = off unless "
                        "`pixdiff configure` set it; > 1 doubles the network calls)")
    p.add_argument("--back-projection", type=int, metavar="N",
                   help="rounds of back-projection onto the decoder's own LQ estimate after sampling (default 1; "
                        "0: off): pulls the output's low frequencies (its LQ consistency) towards what the latent "
                        "says and keeps the sampled detail")
    p.add_argument("--sigma", type=float, default=0.0,
                   help="noise level of the latents (0 = clean; > 0 for half-denoised latents, early termination)")
    p.add_argument("--source-weights", type=Path, help="weights of the latent source, if it needs them (taef2)")
    p.add_argument("--prompt", help="caption, for decoders trained with captions (text-only guidance)")
    p.add_argument("--guidance", type=float, default=1.0, help="text guidance scale with --prompt (default 1: off)")


def register(sub) -> None:
    p = sub.add_parser("upscale", help="upscale images through a latent and a PiD decoder",
                       description="Encode each image with the decoder's latent source and decode the latent with "
                                   "PiD at --scale times the input size. Writes OUT/<stem>.png. Inputs whose size is "
                                   "not a multiple of the latent factor are edge-padded and the output is cropped back.")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files")
    p.add_argument("--scale", type=int, default=4, help="upscaling factor; must be one the decoder was trained for")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_decoding_options(p)
    add_common(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch
    import torch.nn.functional as F

    from pixdiff.cli.roundtrip import check_unique_stems
    from pixdiff.data.images import load_image, save_image, to_float
    from pixdiff.decoder import load_decoder
    from pixdiff.errors import InputError
    from pixdiff.latents import load_latent_source

    check_unique_stems(args.images)
    dec = load_decoder(args.decoder)
    if args.scale != dec.cfg.scale:
        raise InputError(f"{dec.name} upscales {dec.cfg.scale}x only; --scale {args.scale} is not supported by it")
    source = load_latent_source(dec.source["name"], args.source_weights)
    results = []
    for path in args.images:
        im = load_image(path)
        if im.note:
            note(f"{path.name}: {im.note}")
        x = to_float(im.pixels).unsqueeze(0)  # (1, 3, H, W)
        h, w = x.shape[-2:]
        if h * w * args.scale**2 > MAX_OUTPUT_PIXELS:
            raise InputError(f"{path}: {w}x{h} at {args.scale}x is above the {MAX_OUTPUT_PIXELS // 2**20} MP output "
                             "limit of this machine; crop it first")
        f = source.factor
        ph, pw = -h % f, -w % f
        if ph or pw:
            note(f"{path.name}: {w}x{h} edge-padded to {w + pw}x{h + ph} (a multiple of {f}); output cropped back")
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        with torch.no_grad():
            z = source.encode(x)
        g = torch.Generator().manual_seed(args.seed)
        y = dec.decode(z, sigma=args.sigma, steps=args.steps, sampler=args.sampler, generator=g,
                       progress=show_progress(args), prompt=args.prompt, guidance=args.guidance,
                       temperature=args.temperature, latent_guidance=args.latent_guidance,
                       back_projection=args.back_projection)
        dst = save_image(y[0, :, : h * args.scale, : w * args.scale], args.out / f"{path.stem}.png")
        results.append({"input": str(path), "output": str(dst), "size": [w * args.scale, h * args.scale]})
    emit(args, {"decoder": dec.name, "images": results},
         "\n".join(f"{Path(r['input']).name} -> {r['output']} ({r['size'][0]}x{r['size'][1]})" for r in results))
    return 0
