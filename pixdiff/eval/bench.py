"""`pixdiff bench generate`: what generating at high resolution costs, latent pipeline vs L2P pixel student.

Per sampling step: one guided velocity evaluation (conditional + unconditional as one batch of 2) at the size
asked; for the latent pipeline also its VAE decode once at the end. Seconds are the median of `repeats` runs
after one warm-up; peak memory as in `pixdiff eval decode` (`peak_memory_mb`: a fresh forked process on CPU).
"""
from __future__ import annotations

import statistics
import time

import torch

from pixdiff.eval.decode import peak_memory_mb


def _timed(fn, repeats: int) -> tuple[float, float]:
    mb = peak_memory_mb(fn)
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), mb


@torch.no_grad()
def bench_generate(source, student, size: int, steps: int = 30, repeats: int = 3) -> dict:
    """source: a latent Generator; student: a pixel (L2P) Generator; both run at size x size."""
    out = {"size": size, "steps": steps, "repeats": repeats}
    for gen in (source, student):
        src = gen.cfg.latent_source
        f, c = (1, 3) if gen.pixel else (src["factor"], src["channels"])
        x = torch.randn(2, c, size // f, size // f)
        caps = gen.text.encode(["two red circles", ""])
        t = torch.full((2,), 0.5)
        step_s, step_mb = _timed(lambda: gen.velocity(x, t, caps), repeats)
        r = {"name": gen.name, "tokens": (size // f // gen.velocity.patch) ** 2, "seconds_per_step": round(step_s, 4),
             "peak_memory_mb_per_step": round(step_mb, 1)}
        total = steps * step_s
        if not gen.pixel:
            dec_s, dec_mb = _timed(lambda: gen.source.decode(x[:1]), repeats)
            r.update(decode_seconds=round(dec_s, 4), decode_peak_memory_mb=round(dec_mb, 1))
            total += dec_s
        r["seconds_per_image"] = round(total, 3)
        out["student" if gen.pixel else "source"] = r
    out["speedup_per_step"] = round(out["source"]["seconds_per_step"] / out["student"]["seconds_per_step"], 3)
    return out

