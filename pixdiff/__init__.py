"""pixdiff: pixel-space diffusion on top of latent image models (PiD decoding, L2P transfer)."""
from pixdiff.decoder import load_decoder
from pixdiff.errors import InputError
from pixdiff.latents import load_latent_source

__version__ = "0.1.0"
__all__ = ["InputError", "load_decoder", "load_latent_source", "__version__"]
