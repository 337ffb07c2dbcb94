"""Denoising and inpainting with a trained model: corrupt, hide, fill in, score.

    x_noisy = corrupt_batch(x, "gaussian", 0.3, seed=0)          # (N, D), seeded
    m = box_mask((8, 8), rows=(2, 5), cols=(1, 6))               # (8, 8), 1 = observed, 0 = hidden
    x_obs = apply_mask(x, m.ravel())                              # hidden pixels set to 0
    x_fill = inpaint(model, x, m.ravel(), iterations=3)           # observed pixels kept

Inpainting keeps what is known and takes the model's guess elsewhere, repeated a few times
so each guess is made from a better input (the fixed-point iteration of Vincent et al. 2010,
section 7):

    x⁽⁰⁾ = x ⊙ m + fill · (1 - m),   x⁽ᵗ⁺¹⁾ = x ⊙ m + g(f(x⁽ᵗ⁾)) ⊙ (1 - m)

A "model" here is anything with a reconstruction: an ``aecore`` autoencoder (through
``embedding.reconstruct_array``), a ``PCABasis`` (its ``reconstruct``), or a plain callable
``(N, D) -> (N, D)``. Masks are 1 for observed and 0 for hidden pixels, as in ``corruption``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .corruption import CORRUPTIONS, block_mask, corrupt, random_pixel_mask
from .embedding import reconstruct_array
from .metrics import psnr

__all__ = ["corrupt_batch", "box_mask", "block", "random_mask", "mask_from_paint", "apply_mask", "inpaint",
           "reconstructor", "psnr_rows", "psnr_curve", "rasterize_drawing", "NOISE_KINDS", "HIDE_FRACTION"]

NOISE_KINDS = tuple(CORRUPTIONS)  # gaussian, masking, salt-pepper
HIDE_FRACTION = "random-pixels"   # psnr_curve's extra "noise": hide a fraction of pixels, then inpaint


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def corrupt_batch(x: np.ndarray, noise: str, level: float, seed: int = 0,
                  value_range: Sequence[float] = (0.0, 1.0)) -> np.ndarray:
    """``x`` (N, D) corrupted by a named noise at ``level`` (the training-time corruptions of
    ``aecore.corruption``), reproducibly from ``seed``. Salt-and-pepper uses the data's range
    for its two values; Gaussian noise is not clipped (the model saw it unclipped)."""
    if noise not in ("none", *NOISE_KINDS):
        raise ValueError(f"noise={noise!r} is not known; choose one of none, {', '.join(NOISE_KINDS)}")
    level = float(level)
    if level < 0 or (noise in ("masking", "salt-pepper") and level > 1):
        raise ValueError(f"level={level!r} must be >= 0 (and <= 1 for {noise}, a fraction of pixels)")
    xt = torch.as_tensor(np.array(x, dtype=np.float32, copy=True))
    if noise == "salt-pepper":
        lo, hi = float(value_range[0]), float(value_range[1])
        out = CORRUPTIONS[noise](xt, level, _rng(seed), low=lo, high=hi) if level > 0 else xt
    else:
        out = corrupt(xt, noise, level, _rng(seed))
    return out.numpy()


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
        raise ValueError(f"shape={tuple(shape)!r} must be an image shape (height, width)")
    return int(shape[0]), int(shape[1])


def block(shape: Sequence[int], top: int, left: int, height: int, width: int) -> np.ndarray:
    """(H, W) float32 mask, 0 inside the block (clipped to the image), 1 elsewhere."""
    return block_mask(_check_shape(shape), int(top), int(left), int(height), int(width)).numpy()


def box_mask(shape: Sequence[int], rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    """(H, W) mask hiding the pixels whose centres lie in a box drawn on the image.

    ``rows`` / ``cols`` are (start, end) in pixel coordinates as a heatmap shows them: pixel
    (r, c) has its centre at (r, c) and covers [r - ½, r + ½] x [c - ½, c + ½]; ends may come in
    either order and may stick out of the image. A box that misses every centre hides the
    pixel nearest its middle, so a small click-drag still hides something.
    """
    H, W = _check_shape(shape)
    r0, r1 = sorted(float(v) for v in rows)
    c0, c1 = sorted(float(v) for v in cols)
    rr = np.arange(H)[:, None]
    cc = np.arange(W)[None, :]
    hidden = (rr >= r0) & (rr <= r1) & (cc >= c0) & (cc <= c1)
    if not hidden.any():
        r = int(np.clip(round((r0 + r1) / 2), 0, H - 1))
        c = int(np.clip(round((c0 + c1) / 2), 0, W - 1))
        if r1 >= -0.5 and r0 <= H - 0.5 and c1 >= -0.5 and c0 <= W - 0.5:  # the box touches the image
            hidden[r, c] = True
    return (~hidden).astype(np.float32)


def random_mask(shape: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """A mask (of any shape) hiding a seeded random ``fraction`` of the pixels."""
    return random_pixel_mask(tuple(int(s) for s in shape), float(fraction), _rng(seed)).numpy()


def _area_resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Average ``a`` (h, w) over the cells of an (H, W) grid (box filter; any sizes)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), resample=Image.Resampling.BOX), dtype=np.float32)


def mask_from_paint(paint: np.ndarray, shape: Sequence[int], threshold: float = 0.25) -> np.ndarray:
    """Turn paint on a canvas into a mask of the image: ``paint`` (h, w) is the paint's opacity
    in [0, 1] (a canvas's alpha channel / 255); an image pixel is hidden when more than
    ``threshold`` of its cell is painted. The canvas may be any size (it is averaged down)."""
    H, W = _check_shape(shape)
    paint = np.asarray(paint, dtype=np.float32)
    if paint.ndim != 2:
        raise ValueError(f"paint must be a 2-D array of opacities, got shape {paint.shape}")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold!r} must be in [0, 1)")
    cover = _area_resize(np.clip(paint, 0, 1), (H, W))  # (H, W) painted fraction of each cell
    return (cover <= threshold).astype(np.float32)


def rasterize_drawing(ink: np.ndarray, shape: Sequence[int], value_range: Sequence[float] = (0.0, 1.0),
                      fit: float | str | None = "auto") -> np.ndarray:
    """A drawing -> one example of the data set, flattened (H*W,).

    ``ink`` (h, w) in [0, 1] is how much ink each canvas pixel holds (a canvas's alpha / 255).
    With a number ``fit`` the drawing is cropped to its ink, scaled so its larger side fills
    ``fit`` of the image's larger side, and centred on its centre of mass (MNIST's convention is
    20/28: digits fill a 20x20 box in 28x28); ``"auto"`` uses 20/28 for images of 16 pixels or
    more and the whole frame (1.0) for smaller ones (scikit-learn's 8x8 digits fill their
    frame); ``None`` averages the whole canvas down without cropping. Values are mapped from
    [0, 1] to ``value_range``; an empty canvas gives the background (``value_range[0]``).
    """
    H, W = _check_shape(shape)
    if fit == "auto":
        fit = 20 / 28 if max(H, W) >= 16 else 1.0
    elif fit is not None and not (isinstance(fit, (int, float)) and 0 < fit <= 1):
        raise ValueError(f"fit={fit!r} must be a fraction in (0, 1], 'auto' or None")
    ink = np.clip(np.asarray(ink, dtype=np.float32), 0, 1)
    if ink.ndim != 2:
        raise ValueError(f"ink must be a 2-D array, got shape {ink.shape}")
    lo, hi = float(value_range[0]), float(value_range[1])
    rows, cols = np.nonzero(ink > 0.05)
    if rows.size == 0:
        return np.full(H * W, lo, dtype=np.float32)
    if fit is None:
        img = _area_resize(ink, (H, W))
    else:
        crop = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        ch, cw = crop.shape
        box = max(1.0, fit * max(H, W))
        scale = box / max(ch, cw)
        th, tw = max(1, min(H, round(ch * scale))), max(1, min(W, round(cw * scale)))
        small = _area_resize(crop, (th, tw))
        img = np.zeros((H, W), dtype=np.float32)
        # centre of mass of the small drawing goes to the image centre
        mass = small.sum()
        cy = (small.sum(axis=1) @ np.arange(th)) / mass if mass > 0 else (th - 1) / 2
        cx = (small.sum(axis=0) @ np.arange(tw)) / mass if mass > 0 else (tw - 1) / 2
        top = int(np.clip(round((H - 1) / 2 - cy), 0, H - th))
        left = int(np.clip(round((W - 1) / 2 - cx), 0, W - tw))
        img[top:top + th, left:left + tw] = small
    peak = float(img.max())
    if peak > 0:
        img = img / peak  # the strongest stroke is full ink, as in the data
    return (lo + (hi - lo) * img).ravel().astype(np.float32)


def apply_mask(x: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """x ⊙ m + fill · (1 - m): what the model is shown (hidden pixels set to ``fill``).

    ``mask`` is (D,) for every row, or (N, D) per row; any (H, W) mask is flattened."""
    x = np.asarray(x, dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim == 2 and m.shape != x.shape:
        m = m.ravel()
    if m.shape[-1] != x.shape[-1]:
        raise ValueError(f"mask has {m.shape[-1]} values per example, x has {x.shape[-1]}")
    return (x * m + fill * (1 - m)).astype(np.float32)


def reconstructor(model) -> Callable[[np.ndarray], np.ndarray]:
    """(N, D) -> (N, D): an aecore model, a PCABasis, or a callable already."""
    if hasattr(model, "reconstruct") and not isinstance(model, torch.nn.Module):
        return lambda x: np.asarray(model.reconstruct(x), dtype=np.float32)  # PCABasis
    if isinstance(model, torch.nn.Module):
        return lambda x: reconstruct_array(model, x)
    if callable(model):
        return lambda x: np.asarray(model(x), dtype=np.float32)
    raise TypeError(f"cannot reconstruct with a {type(model).__name__}; pass a model, a PCABasis or a callable")


def inpaint(model, x: np.ndarray, mask: np.ndarray, iterations: int = 1, fill: float = 0.0) -> np.ndarray:
    """Fill the hidden pixels of ``x`` (N, D) with the model's reconstruction, keeping the
    observed ones: x⁽ᵗ⁺¹⁾ = x ⊙ m + x̂(x⁽ᵗ⁾) ⊙ (1 - m), from x⁽⁰⁾ = ``apply_mask(x, m, fill)``."""
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations={iterations!r} must be a whole number >= 1")
    rec = reconstructor(model)
    x = np.asarray(x, dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)
    m = m.ravel() if m.ndim == 2 and m.shape != x.shape else m
    cur = apply_mask(x, m, fill)
    for _ in range(int(iterations)):
        cur = (x * m + rec(cur) * (1 - m)).astype(np.float32)
    return cur


def psnr_rows(x: np.ndarray, x_hat: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR in dB of each row (one image each): (N,) with inf for an exact copy."""
    x, x_hat = np.atleast_2d(x), np.atleast_2d(x_hat)
    return np.array([psnr(a, b, data_range) for a, b in zip(x, x_hat)], dtype=np.float64)


def psnr_curve(models: Mapping[str, object], pca, x: np.ndarray, noise: str, levels: Sequence[float],
               seed: int = 0, data_range: float = 1.0, value_range: Sequence[float] = (0.0, 1.0),
               iterations: int = 1) -> dict[str, np.ndarray]:
    """PSNR (dB) against noise level for each model, PCA and the corrupted input itself.

    ``models`` maps a name to a model (e.g. ``{"denoising AE": m1, "plain AE": m2}``); ``pca``
    (a ``PCABasis`` or None) is added as ``"PCA"``; ``"corrupted input"`` is the baseline of doing
    nothing. For a named noise each model reconstructs the corrupted batch; for
    ``noise="random-pixels"`` a ``level`` fraction of pixels is hidden and each model inpaints it
    (observed pixels kept). The same corruption (``seed``) is used for every model at a level.
    PSNR is computed from the mean squared error over the whole batch (one number per level,
    finite unless every output is exact). Returns ``{name: (len(levels),) array}`` in the order
    models..., PCA, corrupted input.
    """
    levels = [float(v) for v in levels]
    x = np.asarray(x, dtype=np.float32)
    named = dict(models)
    if pca is not None:
        named["PCA"] = pca
    recs = {name: reconstructor(m) for name, m in named.items()}
    out = {name: np.empty(len(levels)) for name in [*recs, "corrupted input"]}
    for i, level in enumerate(levels):
        if noise == HIDE_FRACTION:
            mask = random_mask(x.shape, min(max(level, 0.0), 1.0), seed)
            shown = apply_mask(x, mask)
            outputs = {name: inpaint(rec, x, mask, iterations) for name, rec in recs.items()}
        else:
            shown = corrupt_batch(x, noise, level, seed, value_range)
            outputs = {name: rec(shown) for name, rec in recs.items()}
        for name, y in outputs.items():
            out[name][i] = psnr(x, y, data_range)
        out["corrupted input"][i] = psnr(x, shown, data_range)
    return out
