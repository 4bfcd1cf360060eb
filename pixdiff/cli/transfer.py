"""`pixdiff transfer` (L2P: latent transformer -> pixel student) and `pixdiff synth` (its synthetic data)."""
from __future__ import annotations

import json
from pathlib import Path

from pixdiff.cli.common import add_common, add_device, compute_device, emit, note, show_progress


def register(sub) -> None:
    p = sub.add_parser("transfer", help="L2P: turn a latent diffusion transformer into a pixel-space student",
                       description="Copy every tensor of the source transformer whose name and shape match into a "
                                   "pixel twin (3 channels, patch = VAE factor x latent patch, same token grid), add "
                                   "a new pixel patch embedding and a Detailer Head in place of the final layer, "
                                   "freeze the middle blocks. Writes an untrained student release to OUT and its "
                                   "report (OUT/transfer_report.json).")
    p.add_argument("--source", required=True, help="a generator (ldm-shapes, or its folder) or a diffusers "
                                                   "transformer folder (ZImageTransformer2DModel, SD3Transformer2DModel)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--n-train", type=int, help="shallow blocks trained at each end (default: L/6, as L2P's 5 of 30)")
    p.add_argument("--vae-factor", type=int, default=8, help="for a bare diffusers folder: its VAE's factor")
    p.add_argument("--patch", type=int, help="student pixel patch (must equal VAE factor x latent patch)")
    p.add_argument("--grow", type=int, help="with an L2P student as --source: the same model at this many times the "
                                            "resolution (patch grown alike, one more head stage per doubling)")
    p.add_argument("--head", default="detailer", choices=["detailer", "linear"],
                   help="detailer: L2P's conv U-Net head; linear: a linear unpatchify (ablation)")
    p.add_argument("--head-width", type=int, default=128, metavar="C",
                   help="the Detailer Head's widest stage (its bottleneck); each stage above it halves, down to the "
                        "full-resolution one (default 128: 16 channels at full resolution for patch 16; L2P's is 512, "
                        "64 at full resolution)")
    p.add_argument("--prediction", default="v", choices=["v", "x", "edm"],
                   help="what the head outputs: v, the velocity (L2P, default); x, the clean image, turned into the "
                        "velocity (x_t - x) / t (JiT's x-prediction; an experiment against the low-noise grain); edm: "
                        "EDM's preconditioned output (the clean image at high noise, the noise at low noise, where "
                        "the noisy image passes through)")
    p.add_argument("--shift", type=float, help="time shift for the student's training and sampling (default: the "
                                                "source's). Pixels are more redundant than latents, so the layout is "
                                                "decided at higher noise; L2P raises the shift with resolution")
    p.add_argument("--embed", default="random", choices=["random", "latent"],
                   help="the new pixel patch embedding: random (L2P, default), or latent: the source's latent "
                        "embedding composed with a pixel -> latent patch map fitted through the source's VAE on "
                        "--data, noise-matched so that pixel noise embeds as the source's latent noise (beyond the "
                        "paper; needs a pixdiff generator as --source)")
    p.add_argument("--data", type=Path, help="--embed latent: a synthetic set (`pixdiff synth`) to fit the map on")
    p.add_argument("--embed-images", type=int, default=1000, help="--embed latent: images of --data used (1000)")
    p.add_argument("--coupled-noise", action="store_true",
                   help="with --embed latent: the student keeps the map and draws its starting noise from its "
                        "source's latent noise (which the embedding then reads exactly), trains on each synthetic "
                        "image paired with the noise the source started it from (the set must record it, as "
                        "`pixdiff synth` does), and seed for seed starts where its source starts (beyond the paper)")
    add_device(p, "encode --data for --embed latent")
    add_common(p, seed=42, progress=False)  # seeds the new tensors' initialisation; 42 made every documented student
    p.set_defaults(func=run_transfer)

    p = sub.add_parser("synth", help="L2P's synthetic training set, rendered by a source generator",
                       description="Draw prompts from the hierarchical taxonomy (categories -> subcategories -> "
                                   "leaves), filter them, and render --per-prompt images each with the source "
                                   "through its own VAE decoder. Writes OUT/*.png and OUT/captions.jsonl. "
                                   "Resumable: run it again with the same arguments; a larger --n extends the set "
                                   "(the prompts of a smaller --n are its first ones).")
    p.add_argument("--teacher", required=True, help="the source generator (ldm-shapes or a folder)")
    p.add_argument("--n", type=int, required=True, help="number of prompts")
    p.add_argument("--per-prompt", type=int, default=2, help="images per prompt (default 2)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cfg", type=float, help="guidance scale (default: the teacher's)")
    p.add_argument("--batch", type=int, default=16, help="images per forward pass (default 16; each batch's noise is "
                                                          "seeded by its position, so a set is remade or resumed with "
                                                          "the same --batch)")
    add_device(p, "render")
    add_common(p)
    p.set_defaults(func=run_synth)


def load_source(name: str, vae_factor: int):
    """(transformer, generator config or None, vae factor) from a generator release or a diffusers folder."""
    from pixdiff.errors import InputError
    from pixdiff.latents.registry import shipped

    folder = shipped(name) or Path(name)
    cfg_file = folder / "config.json"
    if not cfg_file.exists():
        raise InputError(f"--source {name}: no config.json there")
    config = json.loads(cfg_file.read_text())
    if config.get("kind") == "ldm":
        from pixdiff.ldm.generator import load_generator
        gen = load_generator(folder)
        return gen.velocity.transformer, gen.cfg, gen.cfg.latent_source["factor"]
    if "_class_name" in config:
        import diffusers
        cls = getattr(diffusers, config["_class_name"], None)
        if cls is None:
            raise InputError(f"--source {name}: diffusers has no class {config['_class_name']}")
        return cls.from_pretrained(folder), None, vae_factor
    raise InputError(f"--source {name}: neither a pixdiff generator (kind ldm) nor a diffusers model folder")


def run_grow(args) -> int:
    from pixdiff.errors import InputError
    from pixdiff.ldm.generator import load_generator
    from pixdiff.release import save_release
    from pixdiff.transfer.student import grow_student

    gen = load_generator(args.source)
    if not gen.pixel:
        raise InputError(f"--grow needs an L2P student as --source; {gen.name} is a latent generator")
    student, report = grow_student(gen.velocity, args.grow, seed=args.seed)
    cfg = gen.cfg.for_new_weights(size=gen.cfg.size * args.grow, transformer=dict(student.transformer.config),
                                  head_channels=list(student.head.channels), shift=args.shift or gen.cfg.shift,
                                  noise="pixel")
    save_release(student.state_dict(), cfg.to_dict(), args.out)
    rep = {**report.__dict__, "source": str(args.source), "size": cfg.size}
    (args.out / "transfer_report.json").write_text(json.dumps(rep, indent=2) + "\n")
    emit(args, rep, f"grown {gen.name} to {cfg.size}px: pixel patch {report.patch}, {len(report.copied)} tensors "
                    f"from the {gen.cfg.size}px student, {len(report.new)} new -> {args.out}/"
                    + ("; it samples plain pixel noise (the coupled-noise map fits the old patch)"
                       if gen.cfg.noise == "coupled" else ""))
    return 0


def run_transfer(args) -> int:
    from pixdiff.errors import InputError
    from pixdiff.ldm.generator import GeneratorConfig
    from pixdiff.release import save_release
    from pixdiff.transfer.families import family_of
    from pixdiff.transfer.student import transfer

    if args.shift is not None and args.shift <= 0:
        raise InputError(f"--shift must be positive, got {args.shift}")
    if args.grow:
        return run_grow(args)
    if (args.embed == "latent") != (args.data is not None):
        raise InputError("--embed latent and --data go together: the map is fitted on a synthetic set")
    if args.coupled_noise and args.embed != "latent":
        raise InputError("--coupled-noise needs --embed latent (the fitted map couples pixel and latent noise)")
    if args.head_width < 8 or args.head_width & (args.head_width - 1):
        raise InputError(f"--head-width must be a power of two of at least 8, got {args.head_width}")
    if args.embed_images < 1:
        raise InputError(f"--embed-images must be at least 1, got {args.embed_images}")
    transformer, gcfg, factor = load_source(args.source, args.vae_factor)
    n_blocks = len(family_of(transformer).blocks(transformer))
    n_train = args.n_train if args.n_train is not None else max(1, round(n_blocks / 6))
    alignment = fit_embedding(args, transformer, gcfg, factor) if args.embed == "latent" else None
    student, report = transfer(transformer, factor, n_train, seed=args.seed, head_widest=args.head_width,
                               patch=args.patch, head=args.head, prediction=args.prediction, alignment=alignment,
                               coupled=args.coupled_noise)
    if gcfg is None:
        note("bare diffusers source: sampling defaults (size 128, shift 1, MiniLM text) are pixdiff's; check them")
        gcfg = GeneratorConfig()
    cfg = gcfg.for_new_weights(kind="l2p", transformer=dict(student.transformer.config),
                               family=type(student.transformer).__name__, head=args.head,
                               head_channels=list(getattr(student.head, "channels", [])),
                               n_train=n_train, prediction=args.prediction, shift=args.shift or gcfg.shift,
                               noise="coupled" if args.coupled_noise else "pixel")
    save_release(student.state_dict(), cfg.to_dict(), args.out)
    rep = {**report.__dict__, "source": str(args.source), "n_train": n_train, "blocks": n_blocks, "embed": args.embed,
           "noise": cfg.noise}
    if alignment is not None:
        rep["alignment"] = {"data": str(args.data), "r2": alignment.r2, "noise_gain": alignment.noise_gain,
                            "subspace": alignment.subspace, "patches": alignment.patches}
    (args.out / "transfer_report.json").write_text(json.dumps(rep, indent=2) + "\n")
    text = report.summary() + (f"\n{alignment.describe()}" if alignment else "")
    emit(args, rep, text + f"\nstudent (untrained) -> {args.out}/; report: {args.out}/transfer_report.json")
    return 0


def fit_embedding(args, transformer, gcfg, factor):
    """The pixel -> latent patch map for --embed latent, fitted on --data through the source generator's VAE."""
    from pixdiff.errors import InputError
    from pixdiff.latents import load_latent_source
    from pixdiff.transfer.embed import alignment_from_images
    from pixdiff.transfer.families import family_of
    from pixdiff.transfer.synth import SynthSet

    if gcfg is None:
        raise InputError(f"--embed latent needs a pixdiff generator as --source (its VAE encodes --data); "
                         f"{args.source} is a bare diffusers model")
    images = SynthSet(args.data, limit=args.embed_images).images
    dev = compute_device(args.device)
    vae = load_latent_source(gcfg.latent_source["name"]).to(dev)
    fam = family_of(transformer)
    latent_patch = fam.latent_patch(dict(transformer.config))
    note(f"fitting the pixel -> latent patch map on {len(images)} images of {args.data} through {vae.name} ...")
    return alignment_from_images(images, lambda x: vae.encode(x.to(dev)), fam, factor * latent_patch, latent_patch,
                                 seed=args.seed)


def run_synth(args) -> int:
    from pixdiff.ldm.generator import load_generator
    from pixdiff.transfer.synth import synthesize

    gen = load_generator(args.teacher).to(compute_device(args.device))
    r = synthesize(gen, args.n, args.out, args.per_prompt, seed=args.seed, cfg=args.cfg, batch=args.batch,
                   progress=show_progress(args))
    emit(args, r, f"{r['images']} images for {r['prompts']} prompts from {r['source']} -> {r['folder']}/")
    return 0
