"""GenEval-lite and the object counts of `pixdiff eval l2p` on a synthetic set itself (what a student is trained to
reproduce): each image checked against its own prompt.

    python scripts/l2p_synth_stats.py runs/synth19 [--limit N] [--json FILE]
"""
import argparse
import json
from pathlib import Path

from pixdiff.eval.l2p import geneval_lite
from pixdiff.transfer.synth import SynthSet

KEYS = ("accuracy", "se", "n", "objects", "asked", "extra", "missing", "stray", "stray_touching", "median_area")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a synthetic set (`pixdiff synth`)")
    ap.add_argument("--limit", type=int, help="only its first N images")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    data = SynthSet(args.folder, limit=args.limit)
    stats, _ = geneval_lite(data.images, data.prompts, 1)
    out = {"folder": str(args.folder), **{k: stats[k] for k in KEYS}}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
