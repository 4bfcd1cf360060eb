"""Time a training step (forward + backward) of the small Z-Image transformer through diffusers' list forward and
through pixdiff's batched `zimage_forward` (the same numbers, tested), for the latent generator (16 x 16 latents,
patch 2) and the L2P student's transformer (128^2 pixels, patch 16), with random weights and captions.
Also counts the aten operations of one forward of each path (torch.profiler; --repeats 0 counts only).
--compile adds a third path: zimage_forward with every transformer block compiled by torch.compile (fewer, fused
kernels; whether that pays on a launch-bound GPU is what it measures).
usage: python scripts/bench_zimage_forward.py [--batch 64] [--device auto] [--repeats 20] [--compile]"""
import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from pixdiff.ldm.zimage import build_zimage, zimage_forward

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--repeats", type=int, default=20)
ap.add_argument("--compile", action="store_true")
args = ap.parse_args()
dev = torch.device(args.device)
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; bf16 autocast on CUDA, fp32 on CPU")
for label, channels, patch, side in (("ldm (latents)", 16, 2, 16), ("student transformer (pixels)", 3, 16, 128)):
    torch.manual_seed(0)
    model = build_zimage("small", channels, 384, patch).to(dev)
    x = torch.randn(args.batch, channels, side, side, device=dev)
    t = torch.rand(args.batch, device=dev)
    caps = [torch.randn(int(n), 384, device=dev) for n in torch.randint(4, 16, (args.batch,))]
    paths = {"diffusers": lambda: torch.stack(model(list(x.unsqueeze(2).unbind(0)), t, caps, patch_size=patch,
                                                    return_dict=False)[0]),
             "batched": lambda: zimage_forward(model, x, t, caps)}
    if args.compile:
        paths["compiled"] = lambda: zimage_forward(model, x, t, caps)
    for path, fn in paths.items():
        if path == "compiled":
            for block in [*model.noise_refiner, *model.context_refiner, *model.layers]:
                block.compile()
        def step():
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                loss = fn().float().square().mean()
            loss.backward()
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        ops = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        if not args.repeats:
            print(f"{label:30s} {path:9s} {ops:8d} aten ops per forward")
            continue
        for _ in range(3):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        print(f"{label:30s} {path:9s} {(time.perf_counter() - t0) / args.repeats * 1000:8.1f} ms per step, "
              f"{ops} aten ops per forward")
