"""`pixdiff bench generate`: per-step time and peak memory, latent pipeline vs L2P student."""
from __future__ import annotations

from pixdiff.cli.common import add_common, emit


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed and memory benchmarks (generate)",
                       description="Benchmarks. `bench generate`: see its --help.")
    bsub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    g = bsub.add_parser("generate", help="latent generator + VAE decode vs L2P pixel student at one size",
                        description="Time one guided sampling step (cond + uncond batch) of the latent generator and "
                                    "of the L2P student at --size, plus the latent pipeline's VAE decode; report "
                                    "seconds and peak memory. (Quality, and the training-shift sweep, is `pixdiff eval "
                                    "l2p` over students trained at each shift.)")
    g.add_argument("--source", required=True, help="latent generator (ldm-shapes or a folder)")
    g.add_argument("--student", required=True, help="L2P student for this size (e.g. from transfer --grow 2)")
    g.add_argument("--size", type=int, default=256, help="image side (default 256)")
    g.add_argument("--steps", type=int, default=30, help="steps per image for the per-image totals")
    g.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    add_common(g, seed=None, progress=False)
    g.set_defaults(func=run_generate)


def run_generate(args) -> int:
    import torch

    from pixdiff.errors import InputError
    from pixdiff.eval.bench import bench_generate
    from pixdiff.ldm.generator import load_generator

    source, student = load_generator(args.source), load_generator(args.student)
    if source.pixel or not student.pixel:
        raise InputError("--source must be a latent generator and --student an L2P pixel student")
    r = bench_generate(source, student, args.size, args.steps, args.repeats)
    r["threads"] = torch.get_num_threads()
    s, st = r["source"], r["student"]
    lines = [f"{args.size}^2, {args.steps} steps, {r['threads']} threads",
             "| model | tokens | s / step | peak MB / step | decode s | s / image |", "|---|---|---|---|---|---|",
             f"| {s['name']} (latent) + VAE | {s['tokens']} | {s['seconds_per_step']} | "
             f"{s['peak_memory_mb_per_step']} | {s['decode_seconds']} | {s['seconds_per_image']} |",
             f"| {st['name']} (L2P pixels) | {st['tokens']} | {st['seconds_per_step']} | "
             f"{st['peak_memory_mb_per_step']} | - | {st['seconds_per_image']} |"]
    emit(args, r, "\n".join(lines))
    return 0
