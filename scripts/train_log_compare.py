"""Training losses of runs side by side, from their OUT/log.jsonl: the mean of each fifth of the steps, and, against
the first run, the mean ratio of the loss at the same logged steps. Runs with the same --seed and data draw the same
batches and noise levels step for step, so that ratio compares the models on identical batches (less noisy than two
means).

  python scripts/train_log_compare.py docs/results/l2p-coupled-c21-log.jsonl runs/c25/student/log.jsonl
"""
import argparse
import json
from pathlib import Path

import numpy as np


def read(path: str) -> dict[int, float]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", help="log.jsonl files; the first is the reference")
    args = ap.parse_args()
    runs = [read(p) for p in args.logs]
    print("| run | logged steps | loss by fifths | mean ratio to the first run at the same steps (n) |\n"
          "|---|---|---|---|")
    for path, run in zip(args.logs, runs):
        steps = sorted(run)
        fifths = " / ".join(f"{np.mean([run[s] for s in part]):.4f}" for part in np.array_split(steps, 5))
        common = sorted(set(run) & set(runs[0]))
        ratio = np.exp(np.mean([np.log(run[s] / runs[0][s]) for s in common])) if common else float("nan")
        print(f"| {path} | {steps[0]}-{steps[-1]} | {fifths} | {ratio:.3f} ({len(common)}) |")


if __name__ == "__main__":
    main()
