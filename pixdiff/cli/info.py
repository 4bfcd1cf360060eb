"""`pixdiff info`: versions, presets, latent sources, weights found."""
from __future__ import annotations

import os
import platform

from pixdiff.cli.common import add_common, emit


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, presets, latent sources and weights found",
                       description="Show library versions, training presets, latent sources and which weights "
                                   "this installation can find.")
    add_common(p, seed=None, progress=False)
    p.set_defaults(func=run)


def run(args) -> int:
    import diffusers
    import torch
    import transformers

    import pixdiff
    from pixdiff.latents.registry import NAMES, WEIGHTS_DIR, shipped
    from pixdiff.train import l2p, ldm, pid, vae
    from pixdiff.train.loop import bf16_is_fast

    taef2 = os.environ.get("PIXDIFF_TAEF2")
    info = {
        "pixdiff": pixdiff.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": {"capability": torch.backends.cpu.get_cpu_capability(),
                "native_bf16": bf16_is_fast(torch.device("cpu"))},
        "presets": {"train vae": sorted(vae.TRAIN_PRESETS), "train pid": sorted(pid.TRAIN_PRESETS),
                    "train ldm": sorted(ldm.TRAIN_PRESETS), "train l2p": sorted(l2p.TRAIN_PRESETS)},
        "latent_sources": NAMES,
        "weights": {
            "shipped": sorted(p.name for p in WEIGHTS_DIR.iterdir() if shipped(p.name)) if WEIGHTS_DIR.is_dir() else [],
            "folder": str(WEIGHTS_DIR),
            "taef2": taef2 or "not set (PIXDIFF_TAEF2 or --weights)",
        },
    }
    lines = [f"pixdiff {info['pixdiff']}  python {info['python']}  torch {info['torch']}  diffusers "
             f"{info['diffusers']}  transformers {info['transformers']}  ({info['threads']} threads)",
             f"CPU: {info['cpu']['capability']}; training precision (--precision auto): "
             f"{'bf16' if info['cpu']['native_bf16'] else 'fp32 (no native bf16)'}", "",
             "presets:"] + [f"  {k}: {', '.join(v)}" for k, v in info["presets"].items()] + ["", "latent sources:"]
    lines += [f"  {k:10s} {v}" for k, v in NAMES.items()]
    lines += ["", f"shipped weights ({info['weights']['folder']}): {', '.join(info['weights']['shipped']) or 'none'}",
              f"taef2 weights: {info['weights']['taef2']}"]
    emit(args, info, "\n".join(lines))
    return 0
