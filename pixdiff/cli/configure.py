"""`pixdiff configure MODEL --out DIR`: a copy of a release with other sampling defaults (no training).

PiD decoders: temperature and latent guidance. Generators (ldm, l2p): sampling shift, steps, guidance scale and
stochasticity (eta).
"""
from __future__ import annotations

import json
from pathlib import Path

from pixdiff.cli.common import add_common, emit

GENERATOR_FIELDS = ("shift", "steps", "cfg", "eta")


def register(sub) -> None:
    p = sub.add_parser("configure", help="set a release's sampling defaults (PiD: temperature, latent guidance; "
                                         "generators: shift, steps, cfg, eta)",
                       description="Write MODEL to --out (which may be the same folder) with new sampling defaults "
                                   "recorded in its config.json: what decode, upscale, generate and eval use when "
                                   "the matching flags are not given. The weights are copied unchanged. Choose the "
                                   "values on training data or prompts, not on those you report.")
    p.add_argument("model", help="a PiD decoder or a generator (ldm / l2p): shipped name or release folder")
    g = p.add_argument_group("PiD decoders")
    g.add_argument("--temperature", type=float, help="default scale of the starting noise, in (0, 1.5]")
    g.add_argument("--latent-guidance", type=float,
                   help="default guidance against the latent-dropped model (1: off; > 1 doubles the network calls)")
    g = p.add_argument_group("generators (ldm, l2p)")
    g.add_argument("--shift", type=float, help="sampling time shift (> 0; higher spends more steps at high noise); "
                                               "the release keeps its training shift for runs started from it")
    g.add_argument("--steps", type=int, help="default sampling steps (>= 1)")
    g.add_argument("--cfg", type=float, help="default classifier-free guidance scale (>= 1; 1 = off)")
    g.add_argument("--eta", type=float, help="default stochasticity in [0, 1]: fresh noise at each step as a share "
                                             "of DDPM's (0: the deterministic Euler ODE; 1: ancestral sampling)")
    p.add_argument("--out", type=Path, required=True, help="release folder to write")
    add_common(p, seed=None, progress=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from pixdiff.decoder.pid import SAMPLING_FIELDS
    from pixdiff.errors import InputError
    from pixdiff.latents.registry import shipped

    folder = shipped(args.model) or Path(args.model)
    if (folder / "state.pt").exists():
        raise InputError(f"{args.model} is a training run; configure its release (RUN/weights) instead")
    if not (folder / "config.json").exists():
        raise InputError(f"no release {args.model!r}: not a shipped name and not a folder with config.json")
    generator = json.loads((folder / "config.json").read_text()).get("kind") in ("ldm", "l2p")
    mine, other = (GENERATOR_FIELDS, SAMPLING_FIELDS) if generator else (SAMPLING_FIELDS, GENERATOR_FIELDS)
    wrong = [k for k in other if getattr(args, k) is not None]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        raise InputError(f"{flag} does not apply to {args.model} ({'a generator' if generator else 'a PiD decoder'}"
                         f"); its defaults are: " + ", ".join("--" + k.replace("_", "-") for k in mine))
    new = {k: getattr(args, k) for k in mine if getattr(args, k) is not None}
    if not new:
        raise InputError("nothing to set: give " + " and/or ".join("--" + k.replace("_", "-") for k in mine))
    before, after = (configure_generator if generator else configure_decoder)(folder, new, args.out)
    emit(args, {"model": str(args.model), "out": str(args.out), "before": before, "after": after},
         f"{args.model} -> {args.out}: " + ", ".join(f"{k} {before[k]:g} -> {after[k]:g}" for k in new))
    return 0


def configure_decoder(folder: Path, new: dict, out: Path) -> tuple[dict, dict]:
    from dataclasses import replace

    from pixdiff.decoder import load_decoder, save_decoder
    from pixdiff.decoder.pid import SAMPLING_FIELDS

    dec = load_decoder(str(folder))
    dec.sampling(new.get("temperature"), new.get("latent_guidance"))  # the same range checks as decode's
    before = {k: getattr(dec.cfg, k) for k in SAMPLING_FIELDS}
    dec.model.cfg = replace(dec.cfg, **new)
    save_decoder(dec.model, out)
    return before, {k: getattr(dec.model.cfg, k) for k in SAMPLING_FIELDS}


def configure_generator(folder: Path, new: dict, out: Path) -> tuple[dict, dict]:
    import torch

    from pixdiff.ldm.generator import GeneratorConfig, check_sampling
    from pixdiff.release import load_release, save_release

    check_sampling(**new)
    config, state = load_release(folder)
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    before = GeneratorConfig(**config).sampling()
    stored = {("sample_shift" if k == "shift" else k): v for k, v in new.items()}  # "shift" stays the training shift
    config = GeneratorConfig(**{**config, **stored}).to_dict()  # as a release writes it (eta 0 is not stored)
    save_release(state, config, out, dtype=dtypes.pop() if len(dtypes) == 1 else torch.float32)
    return before, {**before, **new}
