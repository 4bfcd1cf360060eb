"""What L2P needs to know about each diffusers transformer family: how to build its pixel-space twin, where its
final projection and its block stack are, and how to call it in pixdiff's time convention.

The pixel twin has the same configuration except 3 input channels and a pixel patch P = VAE factor x latent patch,
so that the token grid and every RoPE / position-embedding position stay the same.
"""
from __future__ import annotations

import torch
from torch import nn

from pixdiff.errors import InputError


class TokenTap(nn.Module):
    """Stands in for a model's final projection (removed by the transfer): keeps the last hidden states for the
    Detailer Head and returns zeros of the shape the model's unpatchify expects."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim
        self.tokens: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.tokens = x  # (B, L, D)
        return x.new_zeros(*x.shape[:-1], self.out_dim)


class ZImageFamily:
    name, class_name = "z-image", "ZImageTransformer2DModel"

    def latent_patch(self, cfg: dict) -> int:
        return int(cfg["all_patch_size"][0])

    def in_channels(self, cfg: dict) -> int:
        return int(cfg["in_channels"])

    def pixel_config(self, cfg: dict, patch: int) -> dict:
        return {**cfg, "in_channels": 3, "all_patch_size": [patch]}

    def token_dim(self, cfg: dict) -> int:
        return int(cfg["dim"])

    def patch_embed_key(self, model) -> str:
        return f"all_x_embedder.{model.config.all_patch_size[0]}-1"

    def grow_patch_embed(self, w: torch.Tensor, patch: int, factor: int) -> torch.Tensor:
        """(D, P P C) in Z-Image's (row, column, channel) order -> (D, fP fP C) that embeds a patch as the old one
        embeds its f x f average-pooled version."""
        d = w.shape[0]
        w = w.view(d, patch, patch, -1).repeat_interleave(factor, 1).repeat_interleave(factor, 2)
        return (w / factor**2).reshape(d, -1)

    def patch_vectors(self, x: torch.Tensor, patch: int) -> torch.Tensor:
        """(B, C, H, W) -> (B H/P W/P, P P C): each patch flattened as the patch embedding reads it."""
        b, c, h, w = x.shape
        return x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 3, 5, 1).reshape(-1, patch**2 * c)

    def from_patch_vectors(self, v: torch.Tensor, patch: int, shape) -> torch.Tensor:
        """The inverse of patch_vectors: (B H/P W/P, P P C) -> `shape` (B, C, H, W)."""
        b, c, h, w = shape
        return v.reshape(b, h // patch, w // patch, patch, patch, c).permute(0, 5, 1, 3, 2, 4).reshape(shape)

    def embed_matrix(self, w: torch.Tensor) -> torch.Tensor:
        return w  # a linear layer: (D, P P C) already

    def blocks(self, model) -> nn.ModuleList:
        return model.layers

    def final_key(self, model) -> str:
        return f"all_final_layer.{model.config.all_patch_size[0]}-1"

    def install_tap(self, model) -> TokenTap:
        p = model.config.all_patch_size[0]
        tap = TokenTap(p * p * model.config.in_channels)
        model.all_final_layer[f"{p}-1"] = tap
        return tap

    def run(self, model, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> None:
        from pixdiff.ldm.zimage import zimage_forward

        zimage_forward(model, x, 1 - t, captions)  # Z-Image's clock: 1 = clean (its pipeline passes 1 - sigma)

    def image_tokens(self, tokens: torch.Tensor, n: int) -> torch.Tensor:
        return tokens[:, :n]  # basic mode: [image tokens (padded), caption tokens]


class SD3Family:
    name, class_name = "sd3", "SD3Transformer2DModel"

    def latent_patch(self, cfg: dict) -> int:
        return int(cfg["patch_size"])

    def in_channels(self, cfg: dict) -> int:
        return int(cfg["in_channels"])

    def pixel_config(self, cfg: dict, patch: int) -> dict:
        f = patch // int(cfg["patch_size"])
        return {**cfg, "in_channels": 3, "out_channels": 3, "patch_size": patch, "sample_size": cfg["sample_size"] * f}

    def token_dim(self, cfg: dict) -> int:
        return int(cfg["num_attention_heads"] * cfg["attention_head_dim"])

    def patch_embed_key(self, model) -> str:
        return "pos_embed.proj"

    def grow_patch_embed(self, w: torch.Tensor, patch: int, factor: int) -> torch.Tensor:
        """(D, C, P, P) conv kernel -> (D, C, fP, fP) that sees the f x f average-pooled patch."""
        return w.repeat_interleave(factor, 2).repeat_interleave(factor, 3) / factor**2

    def patch_vectors(self, x: torch.Tensor, patch: int) -> torch.Tensor:
        """(B, C, H, W) -> (B H/P W/P, C P P): each patch flattened as the conv kernel reads it."""
        b, c, h, w = x.shape
        return x.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5).reshape(-1, c * patch**2)

    def from_patch_vectors(self, v: torch.Tensor, patch: int, shape) -> torch.Tensor:
        """The inverse of patch_vectors: (B H/P W/P, C P P) -> `shape` (B, C, H, W)."""
        b, c, h, w = shape
        return v.reshape(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5).reshape(shape)

    def embed_matrix(self, w: torch.Tensor) -> torch.Tensor:
        return w.reshape(w.shape[0], -1)  # (D, C, P, P) conv kernel -> (D, C P P)

    def blocks(self, model) -> nn.ModuleList:
        return model.transformer_blocks

    def final_key(self, model) -> str:
        return "proj_out"

    def install_tap(self, model) -> TokenTap:
        p = model.config.patch_size
        tap = TokenTap(p * p * model.config.out_channels)
        model.proj_out = tap
        return tap

    def run(self, model, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> None:
        text = nn.utils.rnn.pad_sequence([c.to(x.dtype) for c in captions], batch_first=True)  # (B, L, D_text)
        cfg = model.config
        if text.shape[-1] != cfg.joint_attention_dim or text.shape[-1] != cfg.pooled_projection_dim:
            raise InputError(f"this SD3 model takes {cfg.joint_attention_dim}-d text states and "
                             f"{cfg.pooled_projection_dim}-d pooled ones; the text encoder gives {text.shape[-1]}-d")
        model(hidden_states=x, encoder_hidden_states=text, pooled_projections=text.mean(1), timestep=t * 1000,
              return_dict=False)  # SD3's clock is pixdiff's, in thousandths

    def image_tokens(self, tokens: torch.Tensor, n: int) -> torch.Tensor:
        return tokens


FAMILIES = {f.class_name: f for f in (ZImageFamily(), SD3Family())}


def family_of(model) -> ZImageFamily | SD3Family:
    name = type(model).__name__
    if name not in FAMILIES:
        raise InputError(f"L2P transfer does not know the {name} family: pixdiff maps "
                         f"{', '.join(FAMILIES)}; a new family needs its pixel config, final projection, block "
                         "stack and call convention (pixdiff/transfer/families.py)")
    return FAMILIES[name]
