"""How the checker reads the shapes of true scenes, and of the same scenes through a latent source's VAE round trip:
a confusion matrix (true shape -> shape read), each object matched to the nearest found object of its colour, and
the share read right by object size. The round trip is what the latent generator's samples pass through, so its
misreadings bound what the source (and a student trained on the source's images) can pass.

  python scripts/checker_confusion.py --n 800 --cache runs/samples --sheet docs/img/checker-roundtrip-misread.jpg
"""
import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from pixdiff.data.shapes import SHAPES, random_scene, render, segment
from pixdiff.eval.l2p import roundtrips
from pixdiff.latents import load_latent_source


def confusion(scenes, images) -> tuple[Counter, dict, list]:
    """Counts of (true shape, shape read or 'missing') over all objects, per 6-px size bin the verdicts, and the
    misread objects as (scene index, object)."""
    conf, by_side, wrong = Counter(), {}, []
    for k, (scene, image) in enumerate(zip(scenes, images)):
        found = segment(image)
        for o in scene.objects:
            same = [f for f in found if f.colour == o.colour]
            read = min(same, key=lambda f: (f.cx - o.cx) ** 2 + (f.cy - o.cy) ** 2).shape if same else "missing"
            conf[(o.shape, read)] += 1
            by_side.setdefault(int(o.side // 6) * 6, []).append(read == o.shape)
            if read != o.shape:
                wrong.append((k, o))
    return conf, by_side, wrong


def sheet(path: Path, truth: list, images, wrong: list, n: int = 24, half: int = 24) -> None:
    """The first n misread objects, each as a (2 half)^2 crop of the truth beside the same crop of the round trip,
    4 pairs per row, enlarged 3x."""
    from PIL import Image

    tiles = []
    for k, o in wrong[:n]:
        y, x = (int(max(0, min(truth[k].shape[0] - 2 * half, c - half))) for c in (o.cy, o.cx))
        tiles.append(np.concatenate([a[y : y + 2 * half, x : x + 2 * half] for a in (truth[k], images[k])], 1))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
    grid = np.concatenate([np.concatenate(tiles[i : i + 4], 1) for i in range(0, len(tiles), 4)], 0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(path)


def table(title: str, conf: Counter, by_side: dict) -> str:
    cols = [*SHAPES, "missing"]
    lines = [f"| {title}: true shape | n | " + " | ".join(f"read {c}" for c in cols) + " |", "|---" * (len(cols) + 2)
             + "|"]
    for s in SHAPES:
        n = sum(conf[(s, c)] for c in cols)
        lines.append(f"| {s} | {n} | " + " | ".join(f"{conf[(s, c)] / n:.2f}" if conf[(s, c)] else "" for c in cols)
                     + " |")
    right = sum(conf[(s, s)] for s in SHAPES) / sum(conf.values())
    sides = ", ".join(f"{b}-{b + 5} px {np.mean(v):.2f} (n={len(v)})" for b, v in sorted(by_side.items()))
    return "\n".join(lines) + f"\n\nread right: {right:.3f}; by side: {sides}\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="vae-f8c16", help="latent source whose round trip to read")
    p.add_argument("--n", type=int, default=800, help="scenes (eval l2p's reference uses prompts x 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--cache", type=Path, help="eval l2p's cache: its round trips are reused")
    p.add_argument("--sheet", type=Path, help="write crops of the first 24 misread objects (truth | round trip)")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)  # the scenes roundtrips draws (scene_batch, same seed)
    scenes = [random_scene(rng, args.size) for _ in range(args.n)]
    truth = [render(s, args.size) for s in scenes]
    conf, by_side, _ = confusion(scenes, truth)
    print(table("truth renders", conf, by_side))
    _, _, rt = roundtrips(load_latent_source(args.source), args.n, args.seed, args.size, cache=args.cache)
    images = ((rt.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    conf, by_side, wrong = confusion(scenes, images)
    print(table(f"through {args.source}", conf, by_side))
    if args.sheet:
        sheet(args.sheet, truth, images, wrong)


if __name__ == "__main__":
    main()
