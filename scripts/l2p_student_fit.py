"""How well does a coupled-noise student (`transfer --coupled-noise`) fit the pairs it trained on? On n images of its
synthetic set, each with the starting noise its source drew (as `train l2p` pairs them):

1. the sample: the student's image from that noise and prompt (no guidance) against the source's image, PSNR (dB),
   on the full image and area-averaged to 1/8 (16 x 16: the layout), and the checker's passes of both;
2. per noise level t: the error of its prediction of the clean image from x_t = (1 - t) x0 + t eps, as the mean
   squared error on [-1, 1] (all pixels, at 1/8 scale, on object pixels, on background pixels), the same for x_t
   itself taken as the clean image (a model that does nothing: above it, the student adds error), and the velocity
   loss it trains on (the error / t^2).

A student whose training-pair PSNR equals its held-out PSNR to the source (`l2p_layout_agreement.py`) is not short
of data but of fit; an error at low t that sits on the objects is an edge the student does not restore.

  python scripts/l2p_student_fit.py runs/c23/student/weights --data runs/synth21 --n 64
"""
import argparse

import torch
import torch.nn.functional as F

from pixdiff.data.shapes import check
from pixdiff.errors import InputError
from pixdiff.eval.metrics import psnr
from pixdiff.flow.time import interpolate, x0_from_velocity
from pixdiff.ldm.generator import load_generator
from pixdiff.transfer.synth import SynthSet

LEVELS = (0.99, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3, 0.1, 0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("student", help="a coupled-noise student's weights folder")
    ap.add_argument("--data", required=True, help="the synthetic set it trained on (`pixdiff synth` folder)")
    ap.add_argument("--n", type=int, default=64, help="pairs, evenly spaced through the set (a multiple of 16)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the white part of the coupled noise")
    args = ap.parse_args()
    st = load_generator(args.student)
    if st.cfg.noise != "coupled":
        raise InputError(f"{args.student} draws its own noise, not its source's: nothing pairs it with its data")
    data = SynthSet(args.data, noise=True)
    idx = torch.arange(0, len(data), len(data) // args.n)[: args.n]
    prompts = [data.prompts[i] for i in idx.tolist()]
    x0 = data.images[idx]
    eps = st.velocity.couple(data.noise[idx], torch.randn(x0.shape, generator=torch.Generator().manual_seed(args.seed)))

    out = torch.cat([st.generate(prompts[k : k + 16], cfg=1, noise=eps[k : k + 16]) for k in range(0, args.n, 16)])
    coarse = psnr(F.avg_pool2d(out, 8), F.avg_pool2d(x0, 8)).mean()
    passes = [sum(check(im, p)["ok"] for im, p in zip(ims, prompts)) for ims in (out, x0)]
    print(f"{args.student} on {args.n} training pairs of {args.data}: sample PSNR to the source's image "
          f"{psnr(out, x0).mean():.2f} dB (at 1/8: {coarse:.2f}); passes: student {passes[0]}, source {passes[1]}")

    objects = ((x0.max(1).values - x0.min(1).values) > 0.5).unsqueeze(1).expand_as(x0)  # saturated: an object
    caps = st.text.encode(prompts)
    print("| t | MSE of the clean-image prediction | at 1/8 | on objects | on background | of x_t itself | "
          "velocity loss |\n|---|---|---|---|---|---|---|")
    with torch.no_grad():
        for t in LEVELS:
            tt = torch.full((args.n,), t)
            xt = interpolate(x0, eps, tt)
            err = x0_from_velocity(xt, tt, st.velocity(xt, tt, caps)) - x0
            mse = err.square().mean()
            low = F.avg_pool2d(err, 8).square().mean()
            print(f"| {t} | {mse:.4f} | {low:.4f} | {err[objects].square().mean():.4f} | "
                  f"{err[~objects].square().mean():.4f} | {(xt - x0).square().mean():.4f} | {mse / t**2:.4f} |")


if __name__ == "__main__":
    main()
