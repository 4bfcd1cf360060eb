"""pixdiff: pixel-space diffusion on top of latent image models (PiD decoding, L2P transfer)."""
__version__ = "0.1.0"
