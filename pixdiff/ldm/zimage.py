"""The latent generator's network: diffusers' `ZImageTransformer2DModel` (the family L2P transfers) at a small size.

Z-Image's own conventions are kept inside this module: its time input is 1 - t (1 = clean) and its output is the
negative of pixdiff's velocity (x0 - eps), as in diffusers' ZImagePipeline. Everything outside sees pixdiff's
convention (t = 1 is noise, v = eps - x0).
"""
from __future__ import annotations

import torch
from torch import nn

PRESETS = {
    "tiny": dict(dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, axes_dims=[4, 6, 6],
                 axes_lens=[128, 32, 32]),
    # 6.3M parameters, 12.6 MB in fp16
    "small": dict(dim=192, n_layers=8, n_refiner_layers=1, n_heads=3, n_kv_heads=3, axes_dims=[16, 24, 24],
                  axes_lens=[128, 64, 64]),
}


def build_zimage(preset: str, latent_channels: int, text_dim: int, patch: int = 2):
    from diffusers import ZImageTransformer2DModel

    return ZImageTransformer2DModel(all_patch_size=(patch,), in_channels=latent_channels, cap_feat_dim=text_dim,
                                    **PRESETS[preset])


SEQ_MULTI_OF = 32  # Z-Image pads every caption and image token run to a multiple of this


def _grid_ids(f0: int, n_f: int, n_h: int, n_w: int, device) -> torch.Tensor:
    """(n_f n_h n_w, 3) position ids (f0 + f, h, w), row-major, as Z-Image numbers its tokens."""
    f, h, w = torch.meshgrid(torch.arange(f0, f0 + n_f, device=device), torch.arange(n_h, device=device),
                             torch.arange(n_w, device=device), indexing="ij")
    return torch.stack([f, h, w], -1).flatten(0, 2)


def zimage_forward(model, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> torch.Tensor:
    """`ZImageTransformer2DModel`'s forward (basic mode: one image per sample, no SigLIP, no ControlNet) on a
    batch tensor, in Z-Image's own conventions (t: 1 = clean; output x0 - eps).

    The same layers and numbers as diffusers' forward, which takes lists and loops over the samples to pad, number
    and cut them (about 270 tensor operations per sample): launch-bound on a GPU, where students of batch 64
    trained at 0.19 s/step on an H100. Here all of it is batched; captions of different lengths are zero-padded
    and masked, as diffusers does. x: (B, C, H, W); t: (B,); captions: B tensors (L_i, D_text).
    Returns (B, C, H, W); the final layer sees all tokens (B, L, D), which is what a TokenTap keeps.
    """
    b, c, h, w = x.shape
    p = model.config.all_patch_size[0]
    key, dev = f"{p}-1", x.device
    gh, gw = h // p, w // p
    n_img = gh * gw
    n_img_pad = n_img + (-n_img) % SEQ_MULTI_OF
    adaln = model.t_embedder(t * model.t_scale).type_as(x)

    # captions: each padded to a multiple of 32 with the pad token, numbered (1 + j, 0, 0); zeros past that
    n_tok = torch.tensor([len(cf) for cf in captions], device=dev)
    n_cap = n_tok + (-n_tok) % SEQ_MULTI_OF  # (B,)
    longest = int(n_cap.max())
    pos = torch.arange(longest, device=dev)[None]  # (1, Lc)
    real, in_cap = pos < n_tok[:, None], pos < n_cap[:, None]  # (B, Lc)
    cap_tokens = model.cap_embedder(torch.cat(captions).to(x.dtype))  # (sum L_i, D)
    cap = cap_tokens.new_zeros(b, longest, cap_tokens.shape[-1])
    cap[real] = cap_tokens
    cap = torch.where((in_cap & ~real)[..., None], model.cap_pad_token.to(cap.dtype), cap)
    cap_freqs = model.rope_embedder(_grid_ids(1, longest, 1, 1, dev))[None].expand(b, -1, -1)
    cap_mask = None if bool(in_cap.all()) else in_cap
    for layer in model.context_refiner:
        cap = layer(cap, cap_mask, cap_freqs)

    # image: (B, C, H, W) -> (B, N, p p C) patches in Z-Image's (row, column, channel) order, then pad tokens
    patches = x.view(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(b, n_img, p * p * c)
    img = model.all_x_embedder[key](patches)
    img = torch.cat([img, model.x_pad_token.to(img.dtype).expand(b, n_img_pad - n_img, -1)], 1)
    # an image is numbered after its caption, (n_cap + 1, h, w); its pad tokens (0, 0, 0)
    pad_ids = torch.zeros(n_img_pad - n_img, 3, dtype=torch.long, device=dev)
    freqs_of = {n: model.rope_embedder(torch.cat([_grid_ids(n + 1, 1, gh, gw, dev), pad_ids]))
                for n in set(n_cap.tolist())}
    img_freqs = torch.stack([freqs_of[n] for n in n_cap.tolist()]) if len(freqs_of) > 1 else \
        freqs_of[longest][None].expand(b, -1, -1)
    for layer in model.noise_refiner:
        img = layer(img, None, img_freqs, adaln)

    # one sequence per sample: [image tokens, its caption tokens], zero past its length, masked
    seq, freqs, mask = torch.cat([img, cap], 1), torch.cat([img_freqs, cap_freqs], 1), None
    if cap_mask is not None:
        mask = torch.cat([torch.ones(b, n_img_pad, dtype=torch.bool, device=dev), cap_mask], 1)
        seq = torch.where(mask[..., None], seq, 0)
        freqs = torch.where(mask[..., None], freqs, 0)
    for layer in model.layers:
        seq = layer(seq, mask, freqs, adaln)
    out = model.all_final_layer[key](seq, c=adaln)[:, :n_img]  # (B, N, p p C)
    return out.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)


class ZImageVelocity(nn.Module):
    """v(x, t, captions) in pixdiff's convention around a ZImageTransformer2DModel."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.patch = transformer.config.all_patch_size[0]

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: list[torch.Tensor]) -> torch.Tensor:
        """x: (B, C, h, w) noisy latents; t: (B,); captions: B tensors (L_i, text_dim). Returns (B, C, h, w)."""
        return -zimage_forward(self.transformer, x, 1 - t, captions).to(x.dtype)
