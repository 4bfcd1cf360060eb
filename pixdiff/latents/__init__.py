"""Latent sources: one protocol (encode / decode / channels / factor), normalisation inside each source."""
from pixdiff.latents.base import LatentSource, check_images, check_latents, crop_to_multiple
from pixdiff.latents.registry import NAMES, load_latent_source

__all__ = ["LatentSource", "check_images", "check_latents", "crop_to_multiple", "NAMES", "load_latent_source"]
