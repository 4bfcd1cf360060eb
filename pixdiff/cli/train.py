"""`pixdiff train {vae,pid,ldm,l2p}`: train a model from a preset, resumable."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from pixdiff.cli.common import (add_common, add_device, compute_device, default_photos, emit, note,
                                show_progress)


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from a preset (resumable)",
                       description="Train a model from a preset. Checkpoints are written atomically to OUT/state.pt "
                                   "every few minutes; --resume continues the same run exactly. Release weights "
                                   "(config.json + fp16 safetensors) land in OUT/weights at the end.")
    p.add_argument("model", choices=["vae", "pid", "ldm", "l2p"],
                   help="vae: the f8c16 autoencoder; pid: a PiD decoder (presets small = the teacher, small-cascade "
                        "= diffusion SR on the source's decoded image, small-regression = L1 SR on it, small-head = "
                        "only the LQ estimate head, to --init a teacher for a new latent source); ldm: the "
                        "text-to-image latent generator on the shapes world; l2p: a pixel student from `pixdiff transfer` "
                        "(--init) on a synthetic set (--data DIR, or --data shapes for rendered scenes)")
    p.add_argument("--preset", default="small", help="size preset (tiny: tests; small*: 2 CPU cores)")
    p.add_argument("--source", default="vae-f8c16",
                   help="pid / ldm: the latent source (vae-f8c16, taef2, a VAE folder)")
    p.add_argument("--source-weights", type=Path, help="pid: weights of the source (taef2: or $PIXDIFF_TAEF2)")
    p.add_argument("--data", nargs="+", type=Path, default=None,
                   help="image folders (default: ../shared/data/photos/train and train-art)")
    p.add_argument("--init", type=Path, help="l2p: the untrained student written by `pixdiff transfer`; pid / ldm: "
                                              "released weights of the same preset and source to start from (a GPU "
                                              "run, or a shipped model to fine-tune)")
    p.add_argument("--shift", type=float,
                   help="override the timestep shift for training: pid / ldm: the preset's (ldm: also its sampling "
                        "shift); l2p: the --init student's (set by `pixdiff transfer --shift`), recorded in the new "
                        "weights, which also sample at it")
    p.add_argument("--full-finetune", action="store_true", help="l2p: train the middle blocks too (ablation)")
    p.add_argument("--augment", action="store_true",
                   help="pid: random 90-degree rotations, flips, colour-channel permutations and saturation of the "
                        "training crops (the photos are few; a decoder head overfits them)")
    p.add_argument("--lq-head", choices=["decoder", "decoder-sigma", "taef2", "taef2-sigma"],
                   help="pid: the adapter's LQ estimate, for presets with a learned one (small, small-head): decoder "
                        "(default: the shape of pixdiff's small VAE decoder, from vae-f8c16's weights) or taef2 (a "
                        "trainable copy of TAEF2's own decoder, from the source's weights; --source taef2); the "
                        "-sigma variants train that head for noisy latents and keep a frozen copy of the source's "
                        "decoder for clean ones. With --init from weights with another head, everything but the "
                        "head is loaded (and the head's tensors whose names and shapes match)")
    p.add_argument("--limit", type=int, help="l2p: use only the first N images of the synthetic set (ablation)")
    p.add_argument("--t-uniform", type=float, default=0.0, metavar="P",
                   help="l2p: draw a share P of the training times t uniformly instead of from the shifted "
                        "logit-normal (default 0; at shift 3 that puts 0.05%% of draws below t = 0.1, where the last "
                        "sampling steps run)")
    p.add_argument("--t-uniform-loss", choices=("velocity", "image"), default="velocity",
                   help="l2p: the loss of the --t-uniform draws: the velocity error as the rest (default), or the "
                        "clean-image error (the velocity error times t^2), so they do not outweigh the rest")
    p.add_argument("--own-path", type=float, default=0.0, metavar="P",
                   help="l2p, coupled-noise students: noise a share P of each batch along the student's own sampling "
                        "path (a few Euler steps from the paired noise) instead of the straight line, with the same "
                        "clean target: it learns to correct its own drift (default 0; costs extra forward passes)")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log.jsonl, weights/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and stop")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--batch", type=int, help="override the preset's batch size")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="auto (default): bf16 autocast where this machine has native bf16 (a GPU with bf16 units, a "
                        "CPU with AVX-512 or AMX), else fp32, because emulated bf16 is over 10x slower; bf16 / fp32 "
                        "force one. A resumed run may change it (numerics then differ slightly)")
    add_device(p, "train; vae trains on the CPU only")
    p.add_argument("--max-minutes", type=float,
                   help="end this invocation after M minutes: checkpoint and export the weights reached (the "
                        "schedule keeps its --steps; --resume goes on)")
    add_common(p)
    p.set_defaults(func=run)


def stored_config(out: Path) -> dict:
    """The configuration a run in `out` was started with ({} when there is none)."""
    path = out / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def compatible_config(config: dict, out: Path, defaults) -> dict:
    """A run started before an option existed resumes when that option keeps its default: drop such keys."""
    if not (stored := stored_config(out)):
        return config
    old = stored.get("model_config", {})
    new = dict(config["model_config"])
    for k in list(new):
        if k not in old and new[k] == getattr(defaults, k, object()):
            del new[k]
    return {**config, "model_config": new}


def training_device(choice: str, model: str) -> str:
    """auto: CUDA when there is a GPU and the model trains there (all but vae), else CPU."""
    from pixdiff.errors import InputError

    if choice == "cuda" and model == "vae":
        raise InputError("--device cuda: `train vae` runs on CPU only so far (pid, ldm and l2p train on CUDA)")
    return compute_device("cpu" if model == "vae" else choice)


def use_bf16(preset_wants: bool, precision: str, device: str) -> bool:
    """--precision auto: the preset's bf16 autocast where this machine runs it natively, else fp32 (and say so)."""
    import torch

    from pixdiff.train.loop import bf16_is_fast

    if precision != "auto":
        return precision == "bf16"
    if preset_wants and not bf16_is_fast(torch.device(device)):
        note(f"precision: fp32 (this {device.upper()} has no native bf16, and emulated bf16 autocast is over 10x "
             "slower; --precision bf16 forces it)")
        return False
    return preset_wants


def run(args) -> int:
    began = time.time()
    from pixdiff.errors import InputError
    from pixdiff.train import l2p, ldm, pid, vae

    presets = {"vae": vae.TRAIN_PRESETS, "pid": pid.TRAIN_PRESETS, "ldm": ldm.TRAIN_PRESETS,
               "l2p": l2p.TRAIN_PRESETS}[args.model]
    if args.preset not in presets:
        raise InputError(f"unknown preset {args.preset!r} for {args.model}; choose from {', '.join(presets)}")
    model_cfg, opt = presets[args.preset]
    overrides = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr)) if v is not None}
    device = training_device(args.device, args.model)
    opt = replace(opt, seed=args.seed, bf16=use_bf16(opt.bf16, args.precision, device), **overrides)
    if args.model == "l2p":
        if not args.init or not args.data or len(args.data) != 1:
            raise InputError("train l2p needs --init STUDENT (from `pixdiff transfer`) and --data SYNTH_DIR (or shapes)")
        if not 0 <= args.t_uniform <= 1:
            raise InputError(f"--t-uniform is a share of the draws in [0, 1], got {args.t_uniform:g}")
        if args.t_uniform_loss != "velocity" and not args.t_uniform:
            raise InputError("--t-uniform-loss weights the --t-uniform draws: give --t-uniform P too")
        if not 0 <= args.own_path <= 1:
            raise InputError(f"--own-path is a share of the batch in [0, 1], got {args.own_path:g}")
        model_cfg = replace(model_cfg, full_finetune=args.full_finetune, limit=args.limit or 0,
                            t_uniform=args.t_uniform, t_uniform_loss=args.t_uniform_loss, own_path=args.own_path)
    if args.augment:
        if args.model != "pid":
            raise InputError(f"--augment is for pid runs, not {args.model}")
        model_cfg = replace(model_cfg, augment=True)
    if args.lq_head:
        if args.model != "pid" or model_cfg.rgb_head != "decoder":
            raise InputError(f"--lq-head is for pid presets with a learned LQ head (small, small-head), not "
                             f"{args.model} --preset {args.preset}")
        if args.lq_head.startswith("taef2") and args.source != "taef2":
            raise InputError(f"--lq-head {args.lq_head} copies TAEF2's decoder: it needs --source taef2, not "
                             f"{args.source}")
        init = "taef2" if args.lq_head.startswith("taef2") else model_cfg.rgb_init
        if args.lq_head == "decoder-sigma" and init and args.source != init:
            raise InputError(f"--lq-head decoder-sigma keeps {init}'s decoder for clean latents: it needs --source "
                             f"{init}, not {args.source} (for taef2: --lq-head taef2-sigma)")
        model_cfg = replace(model_cfg, rgb_head=args.lq_head, rgb_init=init)
    if (args.t_uniform or args.t_uniform_loss != "velocity" or args.own_path) and args.model != "l2p":
        raise InputError(f"--t-uniform, --t-uniform-loss and --own-path are for l2p runs, not {args.model}")
    if args.init and args.model not in ("pid", "l2p", "ldm"):
        raise InputError(f"--init is for pid, ldm and l2p runs, not {args.model}")
    if args.shift is not None:
        if args.model == "vae":
            raise InputError("--shift is for pid, ldm and l2p runs, not vae")
        if args.shift <= 0:
            raise InputError(f"--shift must be positive, got {args.shift:g}")
        model_cfg = replace(model_cfg, shift=args.shift)
    data = [] if args.model == "ldm" else args.data or default_photos("train+train-art")  # ldm: the shapes world
    config = {"model": args.model, "preset": args.preset, "data": [str(d) for d in data],
              "model_config": asdict(model_cfg), "optim": asdict(opt)}
    if args.model in ("pid", "ldm"):
        config["source"] = args.source
    if args.model == "l2p" or args.init:
        config["init"] = str(args.init)
    if args.resume:
        config = compatible_config(config, args.out, type(model_cfg)())
        was = stored_config(args.out).get("optim", {}).get("bf16", opt.bf16)
        if was != opt.bf16:
            note(f"resuming a run trained so far in {'bf16' if was else 'fp32'} in {'bf16' if opt.bf16 else 'fp32'}: "
                 "it continues, but does not match an uninterrupted run exactly")
    if args.dry_run:
        emit(args, config, json.dumps(config, indent=2))
        return 0
    if args.model in ("pid", "ldm"):
        from pixdiff.latents import load_latent_source

        source = load_latent_source(args.source, args.source_weights)
        task = pid.PiDTask(model_cfg, source, data, device, init=args.init) if args.model == "pid" else \
            ldm.LDMTask(model_cfg, source, cache=args.out / "pool.pt", init=args.init, device=device)
    elif args.model == "l2p":
        task = l2p.L2PTask(model_cfg, args.init, data[0], device)
    else:
        task = vae.VAETask(model_cfg, data)
    from pixdiff.train.loop import train

    setup_s = round(time.time() - began, 1)  # imports, weights, data: what a short GPU run must budget for
    summary = train(task, opt, args.out, resume=args.resume, config=config, progress=show_progress(args),
                    max_minutes=args.max_minutes) | {"setup_s": setup_s}
    if summary.get("stopped"):
        emit(args, summary, f"stopped at step {summary['steps']} (checkpoint saved); continue with the same command "
                            "and --resume")
        return 130
    if summary.get("time_limited"):
        emit(args, summary, f"stopped at the {args.max_minutes:g}-minute limit at step {summary['steps']} of "
                            f"{opt.steps}; weights of that step in {summary['weights']} (--resume goes on)")
        return 0
    emit(args, summary, f"trained {args.model} ({args.preset}): {summary['steps']} steps in "
                        f"{summary['elapsed_s'] / 60:.1f} min after {setup_s:.0f} s of set-up; weights in "
                        f"{summary['weights']}")
    return 0
