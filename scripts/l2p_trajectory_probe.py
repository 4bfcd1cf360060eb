"""When do a generator's objects take shape? Sample held-out prompts as `eval l2p` does (same prompts, seeds and
noise) and run the GenEval-lite checker on every step's prediction of the clean image (x0 = x_t - t v, decoded by
the latent source for a latent generator), not only on the final sample: objects found, asked colours' extra /
missing objects, and how far each step's prediction still is from the final image (RMS, [-1, 1] scale).

  python scripts/l2p_trajectory_probe.py --model ldm-shapes --model l2p-shapes --prompts 30 --json out/probe.json

A count that is already wrong at high noise and stays so was decided by the layout; one that goes wrong only in the
last steps, by the rendering.
"""
import argparse
import json

import torch
from tqdm import tqdm

from pixdiff.data.shapes import check
from pixdiff.eval.l2p import eval_noise, job_prompts, object_stats
from pixdiff.ldm.generator import load_generator
from pixdiff.transfer.synth import heldout_prompts


def probe(gen, prompts: list[str], per_prompt: int, seed: int, batch: int = 16) -> list[dict]:
    jobs = job_prompts(prompts, per_prompt)
    steps: dict[int, dict] = {}  # step -> {"t": t, "x0": [batches]}

    def keep(k, t, x0):
        im = x0 if gen.pixel else gen.source.decode(x0.to(gen.device)).cpu()
        steps.setdefault(k, {"t": t, "x0": []})["x0"].append(im.clamp(-1, 1))

    for i in tqdm(range(0, len(jobs), batch), desc=gen.name, leave=False):
        chunk = jobs[i : i + batch]
        gen.sample_latents(chunk, noise=eval_noise(gen, i, len(chunk), seed)(), callback=keep)  # eval l2p's noise
    final = torch.cat(steps[max(steps)]["x0"])  # the last prediction is the sample itself (x0 at the last t)
    rows = []
    for k, s in sorted(steps.items()):
        ims = torch.cat(s["x0"])
        reports = [check(im, p) for im, p in zip(ims, jobs)]
        rows.append({"step": k, "t": round(s["t"], 4), "passes": sum(r["ok"] for r in reports),
                     **object_stats(reports, prompts, per_prompt),
                     "rms_to_final": round(float((ims - final).pow(2).mean().sqrt()), 4)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="generator (shipped name or folder); repeat")
    ap.add_argument("--prompts", type=int, default=30, help="first N held-out prompts (as eval l2p)")
    ap.add_argument("--per-prompt", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    prompts = heldout_prompts(args.prompts)
    out = {}
    for name in args.model:
        gen = load_generator(name)
        out[gen.name] = rows = probe(gen, prompts, args.per_prompt, args.seed)
        print(f"\n{gen.name} (sampling {gen.cfg.sampling()})")
        print("| step | t | passes | objects / asked | extra / missing | stray | RMS to final |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['step'] + 1} | {r['t']:.3f} | {r['passes']} | {r['objects']:.2f} / {r['asked']:.2f} | "
                  f"{r['extra']:.2f} / {r['missing']:.2f} | {r['stray']:.2f} | {r['rms_to_final']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"prompts": args.prompts, "per_prompt": args.per_prompt, "seed": args.seed, "models": out}, f,
                      indent=1)


if __name__ == "__main__":
    main()
