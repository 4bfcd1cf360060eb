"""`pixdiff eval decode`: PiD against decode-then-upscale cascades, one run, one table."""
from __future__ import annotations

import os
from pathlib import Path

from pixdiff.cli.common import (add_common, add_device, compute_device, default_photos, emit, note,
                                show_progress)


def register(sub) -> None:
    p = sub.add_parser("eval", help="benchmarks with metrics (decode)",
                       description="Evaluate models on held-out crops. `eval decode`: see its --help.")
    evsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    d = evsub.add_parser("decode", help="PiD vs decode + bicubic / regression SR / diffusion SR",
                         description="On HQ crops of held-out photos: LQ = HQ down by the scale, latent = encode(LQ). "
                                     "Compares (a) the source's decoder + bicubic, (b) + a regression SR net, (c) + "
                                     "a diffusion SR model, (d) PiD, and PiD on latents noised to each --sigmas. "
                                     "Prints a Markdown table; --json FILE keeps every number; --sheet writes crops "
                                     "side by side.")
    d.add_argument("--decoder", required=True, help="PiD decoder (shipped name or folder)")
    d.add_argument("--regression", help="(b): a decoder trained with --preset small-regression on the same source")
    d.add_argument("--cascade", help="(c): a decoder trained with --preset small-cascade on the same source")
    d.add_argument("--data", nargs="+", type=Path, help="image folders (default: ../shared/data/photos/val)")
    d.add_argument("--size", type=int, default=256, help="HQ crop size (default 256)")
    d.add_argument("--per-image", type=int, default=2, help="crops per photo: one whole-scene + native crops")
    d.add_argument("--steps", type=int, help="sampling steps for (c) and (d) (default: the decoder's, 12)")
    d.add_argument("--sampler", default="euler", choices=["euler", "heun", "x0-renoise"])
    d.add_argument("--temperature", type=float,
                   help="starting-noise scale for (c) and (d) (default: each decoder's own, see `pixdiff configure`)")
    d.add_argument("--latent-guidance", type=float,
                   help="guidance against the latent-dropped model for (c) and (d) (default: each decoder's own, 1 = "
                        "off unless `pixdiff configure` set it; > 1: 2x calls)")
    d.add_argument("--back-projection", type=int, metavar="N",
                   help="(b), (c), (d): rounds of back-projection onto each network's own LQ estimate (PiD's from the "
                        "latent; the decoded image for (b) and (c)) after sampling (default 1; 0: off)")
    d.add_argument("--sigmas", type=float, nargs="*", default=[0.1, 0.2, 0.4],
                   help="latent noise levels for (d) (default 0.1 0.2 0.4; `--sigmas` alone: none)")
    d.add_argument("--source-weights", type=Path, help="weights of the latent source, if it needs them (taef2)")
    d.add_argument("--taef2", type=Path, default=os.environ.get("PIXDIFF_TAEF2"),
                   help="TAEF2 weights for the Frechet features (default $PIXDIFF_TAEF2; skipped when absent)")
    d.add_argument("--sheet", type=Path, help="write an image sheet (PNG/JPEG) of the first crops")
    d.add_argument("--batch", type=int, default=4)
    add_common(d)
    d.set_defaults(func=run_decode)

    e = evsub.add_parser("l2p", help="GenEval-lite of a source generator and its L2P students, retention, Frechet",
                         description="Sample every held-out prompt (never in a synthetic set) --per-prompt times with "
                                     "the same seeds from the source and from each --student, check each image "
                                     "against its caption (counts, colours, shapes, relations), and report accuracy "
                                     "(with its standard error), retention (student / source), a paired comparison "
                                     "with the source (samples gained / lost on the same prompt and seed, McNemar z: "
                                     "|z| < 2 is noise) and the Frechet distance of the students' samples to the "
                                     "source's. Several --student runs make the ablation table.")
    e.add_argument("--source", required=True, help="the latent generator (ldm-shapes or a folder)")
    e.add_argument("--student", action="append", default=[],
                   help="an L2P student (repeat for ablations; a grown, larger student is scored at the source's size, "
                        "area-downsampled)")
    e.add_argument("--prompts", type=int, default=60, help="held-out prompts (default 60, at most 200)")
    e.add_argument("--per-prompt", type=int, default=4, help="images per prompt (default 4)")
    e.add_argument("--steps", type=int, help="sampling steps (default: each model's)")
    e.add_argument("--cfg", type=float, help="guidance scale (default: each model's)")
    e.add_argument("--taef2", type=Path, default=os.environ.get("PIXDIFF_TAEF2"),
                   help="TAEF2 weights for the Frechet features (default $PIXDIFF_TAEF2; skipped when absent)")
    e.add_argument("--sheet", type=Path, help="write an image sheet: one column per model, first prompts")
    e.add_argument("--cache", type=Path,
                   help="keep every model's samples in this folder (about 160 MB per model at 200 prompts), named by "
                        "a hash of its weights and the sampling settings: a later eval with the same source samples "
                        "only the new students; the reference's VAE round trips of as many renders are kept too")
    e.add_argument("--batch", type=int, default=16,
                   help="samples per forward pass (default 16; a multiple of 16, e.g. 128 on a GPU): the noise is "
                        "drawn per 16 samples, so the samples, and the cache, do not depend on it")
    add_device(e, "sample")
    add_common(e)
    e.set_defaults(func=run_l2p)


def frechet_features(taef2):
    """The Frechet features (TAEF2 encoder statistics), or None with a note when its weights are absent."""
    if not taef2:
        note("Frechet distance skipped: no TAEF2 weights for the features (set PIXDIFF_TAEF2 or pass --taef2)")
        return None
    from pixdiff.eval.features import TAEF2Features
    return TAEF2Features(taef2)


def run_decode(args) -> int:
    from pixdiff.data.crops import eval_crops
    from pixdiff.decoder import load_decoder
    from pixdiff.decoder.pid import DEFAULT_STEPS
    from pixdiff.errors import InputError
    from pixdiff.eval.decode import build_methods, evaluate_decode, markdown_table
    from pixdiff.latents import load_latent_source

    pid = load_decoder(args.decoder)
    source = load_latent_source(pid.source["name"], args.source_weights)
    extra = {}
    for role, name in (("regression", args.regression), ("cascade", args.cascade)):
        if name:
            dec = load_decoder(name)
            if dec.source["name"] != f"{source.name}-decoded" or dec.cfg.scale != pid.cfg.scale:
                raise InputError(f"--{role} {dec.name} super-resolves {dec.source['name']!r} at {dec.cfg.scale}x; "
                                 f"this comparison needs {source.name}-decoded at {pid.cfg.scale}x")
            extra[role] = dec
    features = frechet_features(args.taef2)
    args.steps = args.steps or DEFAULT_STEPS
    crops, names = eval_crops(args.data or default_photos("val"), args.size, args.per_image, seed=args.seed)
    methods = build_methods(source, pid, steps=args.steps, sampler=args.sampler, sigmas=args.sigmas,
                            temperature=args.temperature, latent_guidance=args.latent_guidance,
                            back_projection=args.back_projection, **extra)
    r = evaluate_decode(source, methods, crops, names, pid.cfg.scale, features, args.batch, args.seed,
                        progress=show_progress(args))
    outputs, lq = r.pop("outputs"), r.pop("lq")
    if args.sheet:
        from pixdiff.data.images import resize
        from pixdiff.eval.sheet import image_sheet

        cols = {"HQ": crops, "LQ": resize(lq, crops.shape[-2:]), **outputs}
        cols = {k.split(" ")[0] if k.startswith("(") and "sigma" not in k else k.replace("(d) PiD, ", ""): v
                for k, v in cols.items()}
        r["sheet"] = str(image_sheet(cols, names, args.sheet, max_rows=6))
    temperature, latent_guidance = pid.sampling(args.temperature, args.latent_guidance)
    r.update(decoder=pid.name, steps=args.steps, sampler=args.sampler, temperature=temperature,
             latent_guidance=latent_guidance, seed=args.seed,
             back_projection=pid.back_projection_rounds(args.back_projection),
             data=[str(d) for d in args.data or default_photos("val")], **{role: dec.name for role, dec in extra.items()})
    emit(args, r, f"{r['n']} crops of {args.size}^2, {source.name} latents, {pid.cfg.scale}x, {args.steps} "
                  f"{args.sampler} steps\n\n" + markdown_table(r))
    return 0


def run_l2p(args) -> int:
    from pixdiff.eval.l2p import evaluate_l2p, markdown_table
    from pixdiff.ldm.generator import load_generator
    from pixdiff.release import distinct_names

    device = compute_device(args.device)
    source = load_generator(args.source).to(device)
    students = [load_generator(s).to(device) for s in args.student]
    for st, name in zip(students, distinct_names([st.folder for st in students])):
        st.name = name  # runs/s2/student/weights and runs/s3/student/weights: columns s2/student and s3/student
    features = frechet_features(args.taef2)
    r = evaluate_l2p(source, students, args.prompts, args.per_prompt, args.seed, args.steps, args.cfg, features,
                     progress=show_progress(args), cache=args.cache, batch=args.batch)
    samples = r.pop("samples")
    if args.sheet:
        from pixdiff.eval.sheet import image_sheet
        from pixdiff.transfer.synth import heldout_prompts

        rows = heldout_prompts(args.prompts)[:8]
        r["sheet"] = str(image_sheet({k: v[: len(rows)] for k, v in samples.items()}, rows, args.sheet,
                                     cell=128, max_rows=8))
    emit(args, r, f"GenEval-lite on {r['prompts']} held-out prompts x {r['per_prompt']} seeds\n\n" + markdown_table(r))
    return 0
