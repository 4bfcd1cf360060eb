"""`pixdiff configure DECODER --out DIR`: a copy of a PiD release with other sampling defaults (no training)."""
from __future__ import annotations

from pathlib import Path

from pixdiff.cli.common import add_common, emit


def register(sub) -> None:
    p = sub.add_parser("configure", help="set a PiD release's sampling defaults (temperature, latent guidance)",
                       description="Write DECODER to --out (which may be the same folder) with new sampling defaults "
                                   "recorded in its config.json: what decode, upscale and eval decode use when their "
                                   "--temperature / --latent-guidance are not given. The weights are copied "
                                   "unchanged. Choose the values on training photos, not on the photos you report.")
    p.add_argument("decoder", help="PiD decoder: shipped name or release folder")
    p.add_argument("--temperature", type=float, help="default scale of the starting noise, in (0, 1.5]")
    p.add_argument("--latent-guidance", type=float,
                   help="default guidance against the latent-dropped model (1: off; > 1 doubles the network calls)")
    p.add_argument("--out", type=Path, required=True, help="release folder to write")
    add_common(p, seed=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace

    from pixdiff.decoder import load_decoder, save_decoder
    from pixdiff.decoder.pid import SAMPLING_FIELDS
    from pixdiff.errors import InputError

    if (Path(args.decoder) / "state.pt").exists():
        raise InputError(f"{args.decoder} is a training run; configure its release (RUN/weights) instead")
    dec = load_decoder(args.decoder)
    new = {k: getattr(args, k) for k in SAMPLING_FIELDS if getattr(args, k) is not None}
    if not new:
        raise InputError("nothing to set: give --temperature and/or --latent-guidance")
    dec.sampling(new.get("temperature"), new.get("latent_guidance"))  # the same range checks as decode's
    before = {k: getattr(dec.cfg, k) for k in SAMPLING_FIELDS}
    dec.model.cfg = replace(dec.cfg, **new)
    save_decoder(dec.model, args.out)
    after = {k: getattr(dec.model.cfg, k) for k in SAMPLING_FIELDS}
    emit(args, {"decoder": dec.name, "out": str(args.out), "before": before, "after": after},
         f"{dec.name} -> {args.out}: "
         + ", ".join(f"{k} {before[k]:g} -> {after[k]:g}" for k in SAMPLING_FIELDS))
    return 0
