"""Input corruption for denoising autoencoders and the inpainting demos.

Every function is pure: it takes the clean batch and a ``torch.Generator`` and returns a new
tensor, so a run is reproducible and two jobs in one process never share a random stream.
"""
from __future__ import annotations

import torch

__all__ = ["corrupt", "gaussian", "masking", "salt_pepper", "block_mask", "random_pixel_mask", "CORRUPTIONS"]


def gaussian(x: torch.Tensor, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + ε, ε ~ N(0, level^2)."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + level * noise


def masking(x: torch.Tensor, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a random fraction ``level`` of the entries to 0 (Vincent et al. 2008)."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= level
    return x * keep.to(x.dtype)


def salt_pepper(x: torch.Tensor, level: float, generator: torch.Generator | None = None,
                low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Set a random fraction ``level`` of the entries to ``low`` or ``high`` with equal odds."""
    u = torch.rand(x.shape, generator=generator, device=x.device)
    hit = u < level
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    value = torch.where(salt, torch.full_like(x, high), torch.full_like(x, low))
    return torch.where(hit, value, x)


CORRUPTIONS = {"gaussian": gaussian, "masking": masking, "salt-pepper": salt_pepper}


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    if kind == "none" or level == 0:
        return x
    try:
        fn = CORRUPTIONS[kind]
    except KeyError:
        raise ValueError(f"noise={kind!r} is not known; choose one of none, {', '.join(CORRUPTIONS)}") from None
    return fn(x, level, generator)


def block_mask(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A (H, W) mask that is 0 inside the block (hidden) and 1 elsewhere (observed)."""
    H, W = shape
    if not (0 <= top < H and 0 <= left < W and height > 0 and width > 0):
        raise ValueError(f"block top={top}, left={left}, height={height}, width={width} does not fit an image of {H}x{W}")
    m = torch.ones(H, W)
    m[top:top + height, left:left + width] = 0
    return m


def random_pixel_mask(shape: tuple[int, ...], fraction: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A mask hiding a random ``fraction`` of the pixels (0 = hidden)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1]")
    return (torch.rand(shape, generator=generator) >= fraction).float()
