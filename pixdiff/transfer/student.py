"""L2P's latent -> pixel transfer: build the pixel student from a latent diffusion transformer.

1. A pixel twin of the source (same config, 3 input channels, patch P = VAE factor x latent patch: same token
   grid, same RoPE / position-embedding positions).
2. Copy every tensor whose name and shape match the source (blocks, refiners, time / text embedders, pad tokens);
   the new pixel patch embedding keeps its (seeded) random initialisation (L2P), or is the source's latent
   embedding composed with a fitted pixel -> latent map (`alignment`, pixdiff/transfer/embed.py; beyond the paper).
3. Remove the final projection; the last hidden states go, as a token map, to a new Detailer Head over the full
   noisy image, whose output is the velocity.
4. Freeze the middle blocks [n, L - n): only the shallow layers, the embedders and the head train.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pixdiff.errors import InputError
from pixdiff.flow.time import velocity_from_preconditioned, velocity_from_x0
from pixdiff.nn.detailer import DetailerHead, LinearHead
from pixdiff.transfer.embed import Alignment, aligned_embedding, couple_noise
from pixdiff.transfer.families import FAMILIES, TokenTap, family_of


@dataclass
class TransferReport:
    family: str
    patch: int
    copied: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # source tensors with no place in the student
    frozen: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # counts: copied / new / frozen / trainable

    def summary(self) -> str:
        p = self.params
        return (f"L2P transfer ({self.family}, pixel patch {self.patch}): {len(self.copied)} tensors copied "
                f"({p['copied'] / 1e6:.2f}M params), {len(self.new)} new ({p['new'] / 1e6:.2f}M), {len(self.removed)} "
                f"source tensors dropped, {len(self.frozen)} frozen ({p['frozen'] / 1e6:.2f}M); trainable "
                f"{p['trainable'] / 1e6:.2f}M of {p['total'] / 1e6:.2f}M")


PREDICTIONS = ("v", "x", "edm")  # what the head outputs: see PixelStudent


class PixelStudent(nn.Module):
    """The transferred transformer + Detailer Head: v(x, t, captions) on images, in pixdiff's convention.
    prediction "v": the head's output is the velocity (L2P); "x": it is the clean image and v = (x_t - x) / t, with
    t clipped at flow.time.T_MIN (JiT's x-prediction, for pixels where a velocity head leaves noise at low t); "edm":
    it is EDM's preconditioned output, the clean image at high noise and the noise at low noise, where x_t passes
    through (flow.time.velocity_from_preconditioned; beyond the paper)."""

    def __init__(self, transformer: nn.Module, head: DetailerHead | LinearHead, prediction: str = "v",
                 embed_map: torch.Tensor | None = None):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise InputError(f"unknown prediction {prediction!r}: v (velocity, L2P), x (clean image, JiT) or edm "
                             "(EDM's preconditioning)")
        self.prediction = prediction
        self.family = family_of(transformer)
        self.transformer, self.head = transformer, head
        self.tap: TokenTap = self.family.install_tap(transformer)
        self.patch = self.family.latent_patch(dict(transformer.config))
        if head.patch != self.patch:
            raise InputError(f"the Detailer Head works on a {head.patch}-pixel grid but the transformer's patch is "
                             f"{self.patch}")
        if embed_map is not None:  # coupled noise: the pixel -> latent patch map M of the aligned embedding
            self.register_buffer("embed_map", embed_map.float())
        else:
            self.embed_map = None

    @property
    def coupled(self) -> bool:
        return self.embed_map is not None

    def couple(self, eps_latent: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) source noise + (B, 3, H, W) white noise -> (B, 3, H, W) pixel noise the embedding reads as
        that source noise (embed.couple_noise)."""
        if not self.coupled:
            raise InputError("this student samples plain pixel noise; coupled noise needs a student transferred "
                             "with --embed latent --coupled-noise")
        return couple_noise(eps_latent, xi, self.embed_map.cpu(), self.family, self.patch).to(xi.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> torch.Tensor:
        """x: (B, 3, H, W) noisy image; t: (B,); captions: B tensors (L_i, D_text). Returns (B, 3, H, W)."""
        b, _, h, w = x.shape
        gh, gw = h // self.patch, w // self.patch
        self.family.run(self.transformer, x, t, captions)
        tokens = self.family.image_tokens(self.tap.tokens, gh * gw)  # (B, N, D)
        token_map = tokens.transpose(1, 2).reshape(b, -1, gh, gw)  # (B, D, H/P, W/P)
        self.tap.tokens = None
        out = self.head(x, token_map)  # (B, 3, H, W)
        if self.prediction == "x":
            return velocity_from_x0(x, t, out)
        if self.prediction == "edm":
            return velocity_from_preconditioned(x, t, out)
        return out


def head_channels(patch: int, widest: int = 128) -> tuple[int, ...]:
    """One pooling stage per factor of 2 in the patch, channels doubling up to `widest` at the bottleneck."""
    stages = patch.bit_length() - 1
    if 2**stages != patch:
        raise InputError(f"the Detailer Head needs a power-of-two patch, got {patch}")
    return tuple(max(widest // 2 ** (stages - 1 - i), 8) for i in range(stages))


def freeze_middle(student: PixelStudent, n_train: int) -> list[str]:
    """Freeze blocks [n, L - n) of the transformer; returns the frozen parameter names."""
    blocks = student.family.blocks(student.transformer)
    if not 0 <= n_train <= len(blocks) // 2:
        raise InputError(f"n = {n_train} shallow blocks at each end, but the model has {len(blocks)} blocks")
    frozen = []
    for i in range(n_train, len(blocks) - n_train):
        for name, p in blocks[i].named_parameters():
            p.requires_grad_(False)
            frozen.append(f"block {i}: {name}")
    return frozen


def copy_matching(target: nn.Module, source_sd: dict, final: str, report: TransferReport,
                  given: dict | None = None) -> None:
    """Fill `target` from `source_sd` wherever name and shape match, skipping the final projection `final` (the
    student replaces it); `given`: {name: (tensor, how)} for tensors derived otherwise. Records copied / new."""
    with torch.no_grad():
        for name, t in target.state_dict().items():
            if name.startswith(final + "."):
                continue
            if given and name in given:
                value, how = given[name]
                t.copy_(value)
                report.copied.append(f"{name} ({how})")
            elif name in source_sd and source_sd[name].shape == t.shape:
                t.copy_(source_sd[name])
                report.copied.append(name)
            else:
                report.new.append(name)


def param_counts(student: PixelStudent, report: TransferReport) -> dict:
    """Parameter counts behind a report's tensor lists (names may carry a "(how)" note)."""
    sd = student.state_dict()

    def count(names):
        keys = (n.split(" ")[0] for n in names)
        return sum(sd[k if k.startswith("head.") else f"transformer.{k}"].numel() for k in keys)

    params = list(student.parameters())
    return {"copied": count(report.copied), "new": count(report.new),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def make_head(kind: str, token_dim: int, patch: int, channels=None, widest: int = 128):
    if kind == "linear":
        return LinearHead(token_dim, patch)
    if kind != "detailer":
        raise InputError(f"unknown head {kind!r}: detailer or linear")
    return DetailerHead(token_dim, tuple(channels) if channels else head_channels(patch, widest))


def transfer(source: nn.Module, vae_factor: int, n_train: int, seed: int = 42, head_widest: int = 128,
             patch: int | None = None, head: str = "detailer", prediction: str = "v",
             alignment: Alignment | None = None, coupled: bool = False) -> tuple[PixelStudent, TransferReport]:
    """Build the pixel student of a latent transformer `source` (a diffusers model of a known family).
    patch: the student's pixel patch, if you must name it; it has to be vae_factor x the source's latent patch.
    head: "detailer" (L2P) or "linear" (the unpatchify ablation); prediction: see PixelStudent.
    alignment: a pixel -> latent patch map (embed.alignment_from_images) for a latent-aligned patch embedding;
    coupled: keep that map in the student to draw coupled noise (PixelStudent.couple)."""
    fam = family_of(source)
    cfg = dict(source.config)
    want = vae_factor * fam.latent_patch(cfg)
    if patch is not None and patch != want:
        raise InputError(f"a student patch of {patch} does not match the source: VAE factor {vae_factor} x latent "
                         f"patch {fam.latent_patch(cfg)} = {want} (anything else changes the token grid)")
    patch = want
    torch.manual_seed(seed)  # the new tensors' initialisation is part of the recipe
    pixel = type(source).from_config(fam.pixel_config(cfg, patch))
    report = TransferReport(fam.name, patch)
    src_sd = source.state_dict()
    given = aligned_embed(fam, source, pixel, alignment) if alignment is not None else None
    copy_matching(pixel, src_sd, fam.final_key(pixel), report, given)
    copied = set(report.copied)
    report.removed = [n for n in src_sd if n not in copied]
    head_module = make_head(head, fam.token_dim(cfg), patch, widest=head_widest)
    if coupled and alignment is None:
        raise InputError("coupled noise needs the latent-aligned embedding (--embed latent): its map couples them")
    student = PixelStudent(pixel, head_module, prediction, alignment.map if coupled else None)
    report.new += [f"head.{n}" for n, _ in head_module.named_parameters()]
    report.frozen = freeze_middle(student, n_train)
    report.params = param_counts(student, report)
    return student, report


def aligned_embed(fam, source: nn.Module, pixel: nn.Module, alignment: Alignment) -> dict:
    """copy_matching's `given` tensors for a latent-aligned pixel patch embedding."""
    key_src, key_px = fam.patch_embed_key(source), fam.patch_embed_key(pixel)
    src = dict(source.named_parameters())
    w_px = pixel.get_parameter(f"{key_px}.weight")
    w_src = fam.embed_matrix(src[f"{key_src}.weight"]).detach()  # (D, latent patch values)
    want = (w_src.shape[1], fam.embed_matrix(w_px).shape[1])
    if tuple(alignment.map.shape) != want:
        raise InputError(f"the alignment maps {alignment.map.shape[1]}-value pixel patches to {alignment.map.shape[0]}"
                         f"-value latent patches; this source and student need {want[1]} -> {want[0]}")
    w, b = aligned_embedding(w_src, src[f"{key_src}.bias"].detach(), alignment)
    how = f"latent-aligned from {key_src}: R^2 {alignment.r2:.3f}, noise gain {alignment.noise_gain:.3f}"
    return {f"{key_px}.weight": (w.view_as(w_px), how), f"{key_px}.bias": (b, how)}


def grow_student(student: PixelStudent, factor: int = 2, seed: int = 42) -> tuple[PixelStudent, TransferReport]:
    """L2P's high-resolution stage in miniature: the same transformer at `factor` x the resolution with a patch
    `factor` x as large (the same token grid), initialised from `student`. The new patch embedding embeds a patch as
    the old one embeds its average-pooled version; the Detailer Head gains outer stages and keeps the inner ones.
    A coupled-noise student grows into one that samples plain pixel noise: its map fits the old patch, and the grown
    stage trains on rendered scenes, which carry no source noise."""
    if factor < 2 or factor & (factor - 1):
        raise InputError(f"grow factor must be a power of two >= 2, got {factor}")
    if not isinstance(student.head, DetailerHead):
        raise InputError("growing needs a Detailer Head student (the linear head is an ablation)")
    fam, old = student.family, student.transformer
    patch = student.patch * factor
    torch.manual_seed(seed)
    new = type(old).from_config(fam.pixel_config(dict(old.config), patch))
    report = TransferReport(fam.name, patch)
    old_sd, key_old, key_new = old.state_dict(), fam.patch_embed_key(old), fam.patch_embed_key(new)
    copy_matching(new, old_sd, fam.final_key(new), report, given={
        f"{key_new}.weight": (fam.grow_patch_embed(old_sd[f"{key_old}.weight"], student.patch, factor),
                              f"grown from {key_old}.weight"),
        f"{key_new}.bias": (old_sd[f"{key_old}.bias"], f"from {key_old}.bias")})
    extra = len(head_channels(patch)) - len(student.head.channels)
    head = DetailerHead(fam.token_dim(dict(new.config)), (*head_channels(patch)[:extra], *student.head.channels))
    head_sd, old_head = head.state_dict(), student.head.state_dict()
    with torch.no_grad():  # inner stages: down.i -> down.(i + extra) except the input conv; decoder stages by index
        for name, t in old_head.items():
            kind, i, rest = (name.split(".", 2) + ["", ""])[:3]
            target = f"down.{int(i) + extra}.{rest}" if kind == "down" else name
            if target in head_sd and head_sd[target].shape == t.shape:
                head_sd[target].copy_(t)
                report.copied.append(f"head.{target}")
    report.new += [f"head.{n}" for n in head_sd if f"head.{n}" not in report.copied]
    grown = PixelStudent(new, head, student.prediction)
    blocks = fam.blocks(new)
    for i, b in enumerate(fam.blocks(old)):  # keep the same blocks frozen
        if not any(p.requires_grad for p in b.parameters()):
            blocks[i].requires_grad_(False)
            report.frozen += [f"block {i}: {name}" for name, _ in blocks[i].named_parameters()]  # as freeze_middle
    report.params = param_counts(grown, report)
    return grown, report


def build_student(family: str, transformer_config: dict, channels, n_train: int, head: str = "detailer",
                  prediction: str = "v", embed_map_shape: tuple[int, int] | None = None) -> PixelStudent:
    """An (untrained) student with the architecture a release records; load its weights next.
    embed_map_shape: (d_latent, d_pixel) for a coupled-noise student (its map is loaded with the weights)."""
    import diffusers

    if family not in FAMILIES:
        raise InputError(f"unknown transformer family {family!r}; pixdiff maps {', '.join(FAMILIES)}")
    transformer = getattr(diffusers, family).from_config(transformer_config)
    fam = FAMILIES[family]
    patch = fam.latent_patch(dict(transformer.config))
    student = PixelStudent(transformer, make_head(head, fam.token_dim(transformer_config), patch, channels),
                           prediction, torch.zeros(embed_map_shape) if embed_map_shape else None)
    freeze_middle(student, n_train)
    return student


__all__ = ["FAMILIES", "PixelStudent", "TransferReport", "transfer", "freeze_middle", "head_channels", "build_student",
           "grow_student"]
