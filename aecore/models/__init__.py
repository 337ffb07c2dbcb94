"""Model families. Importing this package registers every variant (see ``aecore.registry``)."""
from .autoencoder import Autoencoder, AEOutput  # noqa: F401  (registers linear ... deep)
from .vae import VAE  # noqa: F401  (registers vae)
from ..registry import get_variant


def build_model(cfg, input_dim: int, generator=None):
    """Build the model a ModelConfig describes, through the registry."""
    if isinstance(input_dim, bool) or not isinstance(input_dim, int) or input_dim < 1:
        raise ValueError(f"input_dim={input_dim!r} must be a positive integer")
    return get_variant(cfg.variant).builder(cfg, input_dim, generator=generator)


__all__ = ["Autoencoder", "AEOutput", "VAE", "build_model"]
