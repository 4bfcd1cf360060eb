"""The pixel DiT of PiD: a patch-level transformer over p x p pixel patches plus a pixel-level pathway (PixelDiT).

Patch level: patchify -> Linear -> blocks of (AdaLN-zero from the timestep, QK-norm attention with 2D RoPE on
coordinates normalised to a fixed span, SwiGLU). A latent adapter, when given, adds its gated features before every
second block. Pixel level: every pixel gets its own embedding, and each block modulates it per pixel (AdaLN) from its
patch token; attention compresses each patch's pixels into one token, attends across patches, and expands back; an
MLP acts per pixel. The pixel features are then folded back into an image and a small full-resolution conv head
(residual 3x3 blocks, whose kernels straddle patch borders so no patch grid survives) predicts the velocity; its
output layer starts at zero.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixdiff.nn.layers import Attention, SwiGLU, TimestepEmbedder, modulate, rope_2d


@dataclass(frozen=True)
class PixelDiTConfig:
    patch: int = 16
    dim: int = 192  # patch-token width
    depth: int = 6  # patch-level blocks
    heads: int = 4
    pixel_dim: int = 8  # channels per pixel in the pixel pathway
    pixel_depth: int = 2
    pixel_attn_dim: int = 128  # width of a patch's compressed token in pixel attention
    pixel_ada_rank: int = 64  # per-pixel AdaLN as a rank-r map D -> r -> 6 d p^2 (the full map is 2.4M per block)
    head_blocks: int = 1  # residual 3x3 conv blocks of the full-resolution head
    cond_channels: int = 0  # per-pixel conditioning image channels concatenated to the noisy image
    text_dim: int = 0  # > 0: a pooled text embedding joins the timestep in every AdaLN (optional captions)
    rope_span: float = 16.0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "tiny": PixelDiTConfig(patch=8, dim=32, depth=2, heads=2, pixel_dim=4, pixel_depth=1, pixel_attn_dim=32,
                           pixel_ada_rank=8, head_blocks=1),
    "small": PixelDiTConfig(),
    # small with twice the pixel pathway and head: does a wider per-pixel path raise the detail's correlation?
    "small-wide": PixelDiTConfig(pixel_dim=16, head_blocks=2),
    "base": PixelDiTConfig(dim=768, depth=12, heads=12, pixel_dim=16, pixel_depth=2, pixel_attn_dim=768,
                           pixel_ada_rank=256, head_blocks=2),
}


class PatchBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim, elementwise_affine=False), nn.RMSNorm(dim, elementwise_affine=False)
        self.attn, self.mlp = Attention(dim, heads), SwiGLU(dim, 8 * dim // 3)
        self.ada = nn.Linear(dim, 6 * dim)

    def forward(self, h: torch.Tensor, c: torch.Tensor, rope) -> torch.Tensor:
        # h: (B, N, D), c: (B, D)
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)
        h = h + g1 * self.attn(modulate(self.norm1(h), s1, sc1), rope)
        return h + g2 * self.mlp(modulate(self.norm2(h), s2, sc2))


class PixelBlock(nn.Module):
    """A PiT block over (B, N, p^2, d) pixel features, modulated per pixel by the patch condition s (B, N, D)."""

    def __init__(self, cfg: PixelDiTConfig):
        super().__init__()
        p2, d = cfg.patch**2, cfg.pixel_dim
        self.norm1, self.norm2 = nn.RMSNorm(d, elementwise_affine=False), nn.RMSNorm(d, elementwise_affine=False)
        self.ada = nn.Sequential(nn.Linear(cfg.dim, cfg.pixel_ada_rank), nn.Linear(cfg.pixel_ada_rank, 6 * d * p2))
        self.compress, self.expand = nn.Linear(p2 * d, cfg.pixel_attn_dim), nn.Linear(cfg.pixel_attn_dim, p2 * d)
        self.attn = Attention(cfg.pixel_attn_dim, cfg.heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, s: torch.Tensor, rope) -> torch.Tensor:
        b, n, p2, d = x.shape
        s1, sc1, g1, s2, sc2, g2 = self.ada(s).view(b, n, p2, 6 * d).chunk(6, dim=-1)  # each (B, N, p^2, d)
        a = self.compress(modulate(self.norm1(x), s1, sc1).reshape(b, n, p2 * d))  # (B, N, A)
        x = x + g1 * self.expand(self.attn(a, rope)).view(b, n, p2, d)
        return x + g2 * self.mlp(modulate(self.norm2(x), s2, sc2))


class ConvBlock(nn.Module):
    """Residual 3x3 conv block at full resolution; starts as the identity."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(1, c), nn.SiLU(), nn.Conv2d(c, 2 * c, 3, padding=1, padding_mode="replicate"),
                                  nn.SiLU(), nn.Conv2d(2 * c, c, 3, padding=1, padding_mode="replicate"))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelDiT(nn.Module):
    def __init__(self, cfg: PixelDiTConfig):
        super().__init__()
        self.cfg = cfg
        p, d = cfg.patch, cfg.pixel_dim
        c_in = 3 + cfg.cond_channels
        self.patch_embed = nn.Linear(c_in * p * p, cfg.dim)
        self.t_embed = TimestepEmbedder(cfg.dim)
        if cfg.text_dim:  # the last layer starts at zero: text conditioning starts as a no-op
            self.text_embed = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(PatchBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.pixel_embed = nn.Linear(c_in, d)
        self.pixel_pos = nn.Parameter(torch.zeros(p * p, d))  # where a pixel sits inside its patch
        self.pixel_blocks = nn.ModuleList(PixelBlock(cfg) for _ in range(cfg.pixel_depth))
        self.final_norm = nn.RMSNorm(d, elementwise_affine=False)
        self.head = nn.Sequential(*[ConvBlock(d) for _ in range(cfg.head_blocks)])
        self.final = nn.Conv2d(d, 3, 3, padding=1, padding_mode="replicate")
        self.initialize_weights()

    @property
    def injection_points(self) -> list[int]:
        """Blocks before which adapter features are added: every second block."""
        return list(range(0, self.cfg.depth, 2))

    def initialize_weights(self) -> None:
        nn.init.normal_(self.pixel_pos, std=0.02)
        for block in [*self.blocks, *self.pixel_blocks]:  # AdaLN-zero: every residual branch starts closed
            last = block.ada[-1] if isinstance(block.ada, nn.Sequential) else block.ada
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)
        if self.cfg.text_dim:
            nn.init.zeros_(self.text_embed[-1].weight)
            nn.init.zeros_(self.text_embed[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, adapter=None, latent_feats=None,
                sigma: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                text: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, 3, H, W) noisy image, H and W multiples of the patch; t: (B,). Returns the velocity (B, 3, H, W).
        adapter / latent_feats / sigma: a LatentAdapter, its features (one (B, N, D) map per injection point plus
        one for the pixel pathway, so len(injection_points) + 1 maps) and the latent noise level (B,).
        cond: (B, cond_channels, H, W) per-pixel condition; text: (B, text_dim) pooled caption embedding."""
        b, _, hgt, wid = x.shape
        p = self.cfg.patch
        gh, gw = hgt // p, wid // p
        if self.cfg.cond_channels:  # cond: (B, cond_channels, H, W), e.g. the adapter's RGB estimate
            x = torch.cat([x, cond.to(x.dtype)], 1)
        c_in = x.shape[1]
        patches = F.unfold(x, p, stride=p).transpose(1, 2)  # (B, N, c_in p^2)
        h = self.patch_embed(patches)  # (B, N, D)
        temb = self.t_embed(t)  # (B, D)
        if self.cfg.text_dim:
            temb = temb + self.text_embed(text.to(temb.dtype))
        c = F.silu(temb)
        rope = rope_2d(gh, gw, self.cfg.dim // self.cfg.heads, self.cfg.rope_span, device=x.device)
        for i, block in enumerate(self.blocks):
            if adapter is not None and i in self.injection_points:
                k = self.injection_points.index(i)
                h = adapter.inject(k, h, latent_feats[k], sigma)
            h = block(h, c, rope)
        s = h + temb.unsqueeze(1)  # (B, N, D): the patch condition of the pixel pathway
        if adapter is not None:  # the latent's direct path into the pixel pathway
            s = adapter.inject(len(self.injection_points), s, latent_feats[-1], sigma)
        s = F.silu(s)
        pix = patches.view(b, gh * gw, c_in, p * p).transpose(2, 3)  # (B, N, p^2, c_in)
        y = self.pixel_embed(pix) + self.pixel_pos  # (B, N, p^2, d)
        prope = rope_2d(gh, gw, self.cfg.pixel_attn_dim // self.cfg.heads, self.cfg.rope_span, device=x.device)
        for block in self.pixel_blocks:
            y = block(y, s, prope)
        y = self.final_norm(y).transpose(2, 3).reshape(b, gh * gw, -1).transpose(1, 2)  # (B, d p^2, N)
        y = F.fold(y, (hgt, wid), p, stride=p)  # (B, d, H, W)
        return self.final(self.head(y))  # (B, 3, H, W)
