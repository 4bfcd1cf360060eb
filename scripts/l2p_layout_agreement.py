"""Do two generators lay out the same scene for the same prompt and seed? The correlation of their samples' coarse
layouts (grey level, area-averaged to 8 x 8 cells), per sample pair, against the same measure between mismatched
pairs (each sample against another prompt's sample of the other model: the chance level). Samples are drawn as
`eval l2p` draws them (same prompts, seeds, noise), read from its --cache when there. Also the PSNR between the
two samples of a prompt and seed (and, as chance, between mismatched pairs), on the full image and area-averaged to
1/8 of its side (where the PSNR at 1/8 is barely higher than the full one, the two differ in layout, not in edges),
and each model's edge energy (the energy of its samples' detail layer, image minus Gaussian low-pass, at full, 1/2
and 1/4 of the side) as a ratio to the first model's: below 1, softer edges at that scale.

  python scripts/l2p_layout_agreement.py --model l2p-shapes --model runs/fresh/s12-at16/weights --cache runs/samples
"""
import argparse
import itertools

import torch
import torch.nn.functional as F

from pixdiff.eval.l2p import cached_samples
from pixdiff.eval.metrics import highpass, psnr
from pixdiff.ldm.generator import load_generator
from pixdiff.transfer.synth import heldout_prompts


def layouts(images: torch.Tensor, cells: int = 8) -> torch.Tensor:
    """(N, cells * cells) standardised coarse grey levels of (N, 3, H, W) images in [-1, 1]."""
    g = F.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), cells).flatten(1)
    return (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-6)


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean correlation of matched pairs, and of each sample with the next sample's partner (chance)."""
    la, lb = layouts(a), layouts(b)
    matched = (la * lb).mean(1).mean()
    chance = (la * lb.roll(1, 0)).mean(1).mean()
    return round(float(matched), 3), round(float(chance), 3)


def pair_psnr(a: torch.Tensor, b: torch.Tensor, scale: int = 1) -> tuple[float, float]:
    """Mean PSNR (dB) of matched pairs, and of each sample with the next one's partner (chance): how nearly the two
    draw the same picture, colour and all; scale: area-average both by this factor first."""
    a, b = F.avg_pool2d(a.float(), scale), F.avg_pool2d(b.float(), scale)
    return round(float(psnr(a, b).mean()), 2), round(float(psnr(a, b.roll(1, 0)).mean()), 2)


def edge_energy(images: torch.Tensor, scale: int = 1) -> float:
    """Mean energy of the detail layer (`highpass`, as PiD's high-frequency fidelity) of (N, 3, H, W) images,
    area-averaged by `scale` first."""
    return float(highpass(F.avg_pool2d(images.float(), scale)).square().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="generator (shipped name or folder); repeat")
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cfg", type=float, help="guidance scale (default: each model's, as `eval l2p` without --cfg)")
    ap.add_argument("--cache", help="eval l2p's sample cache")
    args = ap.parse_args()
    prompts = heldout_prompts(args.prompts)
    samples = {}
    for name in args.model:
        gen = load_generator(name)
        samples[name] = cached_samples(gen, prompts, args.per_prompt, args.seed, cfg=args.cfg, cache=args.cache)
    print("| model A | model B | layout correlation, same prompt and seed (chance) | PSNR, same prompt and seed "
          "(chance) | PSNR at 1/8 (chance) |\n|---|---|---|---|---|")
    for a, b in itertools.combinations(samples, 2):
        (m, c), (pm, pc) = agreement(samples[a], samples[b]), pair_psnr(samples[a], samples[b])
        lm, lc = pair_psnr(samples[a], samples[b], 8)
        print(f"| {a} | {b} | {m:.3f} ({c:.3f}) | {pm:.2f} ({pc:.2f}) | {lm:.2f} ({lc:.2f}) |")
    first = args.model[0]
    print(f"\n| model | edge energy at full, 1/2, 1/4 of the side, against {first}'s |\n|---|---|")
    for name, ims in samples.items():
        ratios = [edge_energy(ims, s) / edge_energy(samples[first], s) for s in (1, 2, 4)]
        print(f"| {name} | " + " / ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
