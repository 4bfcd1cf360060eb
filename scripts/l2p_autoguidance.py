"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") for an L2P student:
sample with v = v_bad + w (v_good - v_bad), where the bad model is an earlier checkpoint of the same student, and
score it as `eval l2p` does (same held-out prompts, seeds and noise; GenEval-lite against the source, Frechet
distance). Two network calls per step, as with classifier-free guidance. An experiment, not a pipeline option.

  PIXDIFF_TAEF2=../shared/weights/taef2 python scripts/l2p_autoguidance.py --model runs/c31/at3-cfg1/weights \
      --guide runs/c29/at3-cfg1/weights --scale 2 --prompts 30 --cache runs/samples --json runs/ag2.json
"""
import argparse
import json
import os

import torch

from pixdiff.cli.evaluate import frechet_features
from pixdiff.eval.l2p import evaluate_l2p, markdown_table
from pixdiff.ldm.generator import load_generator


class AutoGuided(torch.nn.Module):
    """The guided velocity of two students with the same inputs; the scale is a buffer, so the eval cache's
    fingerprint (the weights) tells scales apart."""

    def __init__(self, good: torch.nn.Module, bad: torch.nn.Module, scale: float):
        super().__init__()
        self.good, self.bad = good, bad
        self.register_buffer("w", torch.tensor(scale))

    def couple(self, *args):  # a coupled-noise student's starting noise: the good model's
        return self.good.couple(*args)

    def forward(self, x, t, captions):
        v_bad = self.bad(x, t, captions)
        return v_bad + self.w * (self.good(x, t, captions) - v_bad)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the student (a release folder)")
    p.add_argument("--guide", required=True, help="the bad version of it: an earlier checkpoint, or a weaker student "
                                                  "of the same source, image size and noise")
    p.add_argument("--scale", type=float, default=2.0, help="w (1: the model alone)")
    p.add_argument("--source", default="ldm-shapes")
    p.add_argument("--prompts", type=int, default=30)
    p.add_argument("--cache", default=None, help="eval l2p's sample cache folder")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    good, bad = load_generator(args.model), load_generator(args.guide)
    shared = ("kind", "size", "noise", "shift", "sample_shift", "steps", "cfg", "latent_source")
    differ = [k for k in shared if getattr(good.cfg, k) != getattr(bad.cfg, k)]
    if differ:
        raise SystemExit(f"{args.model} and {args.guide} differ in {', '.join(differ)}: they cannot share a sampler")
    good.velocity = AutoGuided(good.velocity, bad.velocity, args.scale).eval()
    good.name = f"autoguided w={args.scale:g}"
    r = evaluate_l2p(load_generator(args.source), [good], args.prompts, 4, 0,
                     features=frechet_features(os.environ.get("PIXDIFF_TAEF2")), cache=args.cache)
    r.pop("samples")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    print(markdown_table(r))


if __name__ == "__main__":
    main()
