"""How much LQ PSNR can an estimator recover from TAEF2 latents noised to sigma? (docs/benchmarks.md, session 16)

The TAEF2 teacher loses 2.9 dB of LQ PSNR at sigma 0.2 (the acceptance allows 1) and its output follows its LQ
head's estimate, so this probe measures the estimate alone, on the `val` crops of `pixdiff eval decode` (LQ 64^2):
  - TAEF2's decoder on the noisy latent as it is, and on z_s / (1 - sigma) (the flow form's scale undone);
  - the shipped teacher's fine-tuned noisy-latent head;
  - with --steps N: a sigma-conditioned latent denoiser (residual conv net, FiLM from sigma, starting as the
    rescale) in front of TAEF2's frozen decoder, trained N steps on the pixel MSE of the decode (train photos).
PSNR here is the mean over crops of each crop's PSNR in [-1, 1] on float outputs (eval decode quantises to 8 bits,
so its numbers are about 0.5 dB higher); compare rows with each other.

    PIXDIFF_TAEF2=../shared/weights/taef2 python scripts/noisy_latent_probe.py --steps 1500 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn
from tqdm import tqdm

from pixdiff.data.crops import RandomCrops, eval_crops
from pixdiff.data.images import downsample
from pixdiff.decoder import load_decoder
from pixdiff.flow.time import interpolate
from pixdiff.latents.taef2 import TAEF2


class LatentDenoiser(nn.Module):
    """(B, C, h, w) noisy latents, sigma (B,) -> clean-latent estimate: z_s / (1 - sigma) + a learned correction."""

    def __init__(self, c: int = 32, hidden: int = 128, blocks: int = 6):
        super().__init__()
        self.inp = nn.Conv2d(c + 1, hidden, 3, padding=1)
        self.film = nn.Sequential(nn.Linear(16, hidden), nn.SiLU(), nn.Linear(hidden, 2 * hidden * blocks))
        conv = lambda: nn.Conv2d(hidden, hidden, 3, padding=1)  # noqa: E731
        self.blocks = nn.ModuleList(nn.Sequential(nn.GroupNorm(8, hidden, affine=False), conv(), nn.SiLU(), conv())
                                    for _ in range(blocks))
        self.out = nn.Conv2d(hidden, c, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        f = sigma[:, None] * 2.0 ** torch.arange(8) * math.pi  # (B, 8) Fourier features of sigma
        scale_shift = self.film(torch.cat([f.sin(), f.cos()], 1)).view(len(z), len(self.blocks), 2, -1, 1, 1)
        x = self.inp(torch.cat([z, sigma.view(-1, 1, 1, 1).expand(-1, 1, *z.shape[-2:])], 1))
        for i, block in enumerate(self.blocks):
            norm, rest = block[0], block[1:]
            x = x + rest(norm(x) * (1 + scale_shift[:, i, 0]) + scale_shift[:, i, 1])
        return z / (1 - sigma).view(-1, 1, 1, 1) + self.out(x)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((10 * torch.log10(4 / (x.clamp(-1, 1) - ref).square().flatten(1).mean(1))).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decoder", default="pid-taef2-x4-teacher", help="a TAEF2 PiD release with a taef2(-sigma) head")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4])
    p.add_argument("--steps", type=int, default=0, help="train the latent denoiser this many steps (0: baselines only)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--pool", type=int, default=3840, help="LQ training crops encoded once, noised afresh every step")
    p.add_argument("--json")
    args = p.parse_args()
    torch.manual_seed(0)
    src = TAEF2()
    hq, _ = eval_crops("../shared/data/photos/val", 256, 2)
    lq = downsample(hq, 4)
    z = src.encode(lq)
    g = torch.Generator().manual_seed(123)
    noise = [torch.randn(z.shape, generator=g) for _ in range(3)]  # three draws per sigma > 0

    @torch.no_grad()
    def evaluate(estimate) -> dict:
        out = {}
        for s in args.sigmas:
            sig, draws = torch.full((len(z),), s), noise[: 1 if s == 0 else 3]
            out[str(s)] = round(sum(psnr(estimate(interpolate(z, e, sig), sig), lq) for e in draws) / len(draws), 3)
        return out

    def decode(zz: torch.Tensor) -> torch.Tensor:
        return src.decoder(zz).mul(2).sub(1)

    head = load_decoder(args.decoder).model.adapter.aux
    rows = {"TAEF2 decoder on z_s": evaluate(lambda zz, s: decode(zz)),
            "TAEF2 decoder on z_s / (1 - sigma)": evaluate(lambda zz, s: decode(zz / (1 - s).view(-1, 1, 1, 1))),
            f"{args.decoder}'s noisy-latent head on z_s": evaluate(lambda zz, s: head.decoder(zz).mul(2).sub(1))}
    for k, v in rows.items():
        print(k, v, flush=True)
    if args.steps:
        data = RandomCrops("../shared/data/photos/train", 256, 4.0, augment=True)
        gt = torch.Generator().manual_seed(1)
        with torch.no_grad():
            pool_lq = torch.cat([downsample(data.sample(32, gt), 4) for _ in tqdm(range(args.pool // 32), desc="pool")])
            pool_z = torch.cat([src.encode(x) for x in pool_lq.split(64)])
        den = LatentDenoiser()
        opt = torch.optim.AdamW(den.parameters(), lr=args.lr, weight_decay=0.0)
        t0, curve = time.time(), {}
        for step in tqdm(range(1, args.steps + 1), desc="denoiser"):
            i = torch.randint(len(pool_z), (args.batch,), generator=gt)
            s = torch.rand(args.batch, generator=gt) * 0.78 + 0.02  # sigma ~ U[0.02, 0.8]
            zs = interpolate(pool_z[i], torch.randn(pool_z[i].shape, generator=gt), s)
            for group in opt.param_groups:  # warm-up, cosine
                group["lr"] = args.lr * min(1, step / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            loss = (decode(den(zs, s)) - pool_lq[i]).square().mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
            opt.step()
            if step % 500 == 0 or step == args.steps:
                den.eval()
                curve[step] = evaluate(lambda zz, s: decode(den(zz, s)))
                den.train()
                print(f"step {step} ({time.time() - t0:.0f} s):", curve[step], flush=True)
        rows[f"latent denoiser + TAEF2 decoder, {args.steps} x {args.batch}"] = curve[args.steps]
        rows["denoiser learning curve"] = curve
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lq_psnr_of_the_estimate": rows, "crops": len(z), "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
