"""What a decoder makes from codes: samples, the 2-D manifold, interpolations, traversals,
and the VAE's KL per latent dimension.

    images = sample_grid(vae, 64, temperature=1.0, seed=0)        # (64, D) from z ~ N(0, T² I)
    grid = manifold_grid(vae, 15)                                  # K = 2: decode a 15 x 15 grid of codes
    grid = manifold_grid(ae, 15, x=x_train)                        # plain AE: over its training codes' range
    path = interpolate(model, x_a, x_b, steps=10)                  # codes (1-t) h_a + t h_b, decoded
    kl = kl_per_dim(vae, x_test); active = active_units(kl)

Works for any model with ``encode`` / ``decode`` (every registered variant); the sampling and
KL functions need a VAE (``encode_dist`` and a prior). Nothing here changes a model's
train/eval mode, so a model shared between threads (a finished job's) is safe to use.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from .embedding import encode_array

__all__ = ["decode_codes", "sample_grid", "ManifoldGrid", "code_range", "manifold_grid", "Interpolation", "interpolate",
           "traverse", "kl_per_dim", "active_units", "ACTIVE_KL_NATS", "rate_distortion", "is_vae",
           "DEFAULT_PRIOR_SPAN"]

# A latent dimension is "active" when its KL exceeds 0.01 nats. The cut-off is Burda, Grosse &
# Salakhutdinov (2016, "Importance Weighted Autoencoders", section 5.2), who call unit u active
# when Cov_x(E_q[u|x]) > 10^-2; a collapsed unit has q(u|x) = p(u) for every x, so both its
# activity and its KL are ~0, and the same 0.01 threshold separates them on the KL (the
# convention of the posterior-collapse literature that plots KL per dimension).
ACTIVE_KL_NATS = 0.01
DEFAULT_PRIOR_SPAN = 2.0  # the VAE's manifold covers z ∈ [-2, 2]² (±2 standard deviations of the prior)


def is_vae(model) -> bool:
    """True for models with a Gaussian encoder and a prior to sample from."""
    return hasattr(model, "encode_dist") and hasattr(model, "sample")


def _param(model) -> torch.Tensor:
    return next(model.parameters())


def _as_tensor(a, model) -> torch.Tensor:
    p = _param(model)
    return torch.tensor(np.asarray(a, dtype=np.float32), dtype=p.dtype, device=p.device)  # a copy: inputs may be read-only


def _need_vae(model, what: str) -> None:
    if not is_vae(model):
        raise TypeError(f"{what} needs a VAE (a Gaussian encoder q(z|x) and a prior p(z)); "
                        f"got a {type(model).__name__}: train variant 'vae'")


@torch.no_grad()
def decode_codes(model, codes: np.ndarray) -> np.ndarray:
    """x̂ = g(h) for each row of ``codes`` (N, K): (N, D) float32."""
    codes = np.atleast_2d(np.asarray(codes, dtype=np.float32))
    k = model.cfg.code_size
    if codes.shape[1] != k:
        raise ValueError(f"codes have {codes.shape[1]} values per row, the model's code size is K={k}")
    return model.decode(_as_tensor(codes, model)).cpu().numpy().astype(np.float32, copy=False)


@torch.no_grad()
def sample_grid(vae, n: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """n new examples (n, D): random codes z ~ N(0, T² I) decoded (T = ``temperature``)."""
    _need_vae(vae, "sampling")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n={n!r} must be a whole number >= 1")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature!r} must be a number >= 0")
    g = torch.Generator(device=_param(vae).device).manual_seed(int(seed))
    return vae.sample(int(n), float(temperature), generator=g).cpu().numpy().astype(np.float32, copy=False)


class ManifoldGrid(NamedTuple):
    z1: np.ndarray      # (n,) values of code unit 1, left to right
    z2: np.ndarray      # (n,) values of code unit 2, bottom to top
    codes: np.ndarray   # (n*n, 2) row-major from the TOP row: row r has z2 = z2[n-1-r], column c has z1 = z1[c]
    images: np.ndarray  # (n*n, D) the decoded codes, same order (tile them n per row: the picture has z2 up)


def code_range(model, x: np.ndarray) -> tuple[tuple[float, float], ...]:
    """(min, max) of each code unit over the examples ``x`` (N, D)."""
    codes = encode_array(model, x)
    return tuple((float(lo), float(hi)) for lo, hi in zip(codes.min(axis=0), codes.max(axis=0)))


def _span(span) -> tuple[tuple[float, float], tuple[float, float]]:
    if np.isscalar(span):
        s = float(span)
        if not s > 0:
            raise ValueError(f"span={span!r} must be > 0")
        return (-s, s), (-s, s)
    (a0, a1), (b0, b1) = span
    return (float(a0), float(a1)), (float(b0), float(b1))


def manifold_grid(model, n_per_side: int = 15, span=None, x: np.ndarray | None = None) -> ManifoldGrid:
    """Decode an n x n grid of 2-D codes (the model's code size must be K = 2).

    ``span``: a number s for [-s, s]² or ((z1_min, z1_max), (z2_min, z2_max)). Default: for a
    VAE the prior's ±``DEFAULT_PRIOR_SPAN`` standard deviations; for any other model the range
    of the codes of ``x`` (its training examples), which is then required — a plain
    autoencoder has no prior, so only its codes say where it decodes meaningfully.
    """
    k = model.cfg.code_size
    if k != 2:
        raise ValueError(f"the manifold is drawn for a 2-D code; this model has K={k}")
    if isinstance(n_per_side, bool) or int(n_per_side) != n_per_side or n_per_side < 2:
        raise ValueError(f"n_per_side={n_per_side!r} must be a whole number >= 2")
    n = int(n_per_side)
    if span is None:
        if is_vae(model):
            span = DEFAULT_PRIOR_SPAN
        elif x is None:
            raise ValueError("a plain autoencoder has no prior: pass x (training examples) or span")
        else:
            span = code_range(model, x)
    (a0, a1), (b0, b1) = _span(span)
    z1 = np.linspace(a0, a1, n)
    z2 = np.linspace(b0, b1, n)
    zz2, zz1 = np.meshgrid(z2[::-1], z1, indexing="ij")  # (n, n): top row = largest z2
    codes = np.stack([zz1.ravel(), zz2.ravel()], axis=1).astype(np.float32)  # (n*n, 2)
    return ManifoldGrid(z1, z2, codes, decode_codes(model, codes))


class Interpolation(NamedTuple):
    t: np.ndarray       # (steps,) from 0 to 1
    codes: np.ndarray   # (steps, K): codes[0] = h_a, codes[-1] = h_b exactly
    images: np.ndarray  # (steps, D) decoded


def interpolate(model, x_a: np.ndarray, x_b: np.ndarray, steps: int = 10) -> Interpolation:
    """Decode codes on the straight line between the codes of two examples:
    h(t) = (1 - t) h_a + t h_b for t = 0 .. 1 in ``steps`` steps (the VAE uses the means μ)."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 2:
        raise ValueError(f"steps={steps!r} must be a whole number >= 2")
    h = encode_array(model, np.stack([np.ravel(x_a), np.ravel(x_b)]))  # (2, K)
    t = np.linspace(0.0, 1.0, int(steps))
    codes = ((1 - t)[:, None] * h[0] + t[:, None] * h[1]).astype(np.float32)
    codes[0], codes[-1] = h[0], h[1]  # exact endpoints, whatever the rounding
    return Interpolation(t, codes, decode_codes(model, codes))


def traverse(model, x: np.ndarray, dim: int, values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Vary one code unit: the code of ``x`` with unit ``dim`` set to each of ``values``.
    Returns (codes (V, K), images (V, D))."""
    code = encode_array(model, np.ravel(x)[None, :])[0]  # (K,)
    if isinstance(dim, bool) or not 0 <= int(dim) < code.size:
        raise ValueError(f"dim={dim!r} must be a code unit in 0 .. {code.size - 1}")
    codes = np.repeat(code[None, :], len(values), axis=0)
    codes[:, int(dim)] = np.asarray(values, dtype=np.float32)
    return codes, decode_codes(model, codes)


@torch.no_grad()
def kl_per_dim(vae, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Mean over ``x`` of KL(q(z_k|x) || N(0, 1)) for each latent dimension k, in nats: (K,).

    KL_k = -½ (1 + log σ_k² - μ_k² - σ_k²) (Kingma & Welling 2014, Appendix B, one term of the
    sum), so the entries add up to the model's KL term (``objectives.gaussian_kl``) on x.
    """
    _need_vae(vae, "the KL per dimension")
    x = np.asarray(x, dtype=np.float32)
    total = None
    for i in range(0, len(x), batch):
        mu, logvar = vae.encode_dist(_as_tensor(x[i:i + batch], vae))
        kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).double().sum(dim=0)  # (K,) summed over the batch
        total = kl if total is None else total + kl
    if total is None:
        raise ValueError("x is empty")
    return (total / len(x)).cpu().numpy()


def active_units(kl: np.ndarray, threshold: float = ACTIVE_KL_NATS) -> np.ndarray:
    """Boolean (K,): which latent dimensions carry information (KL > ``threshold`` nats)."""
    return np.asarray(kl) > threshold


@torch.no_grad()
def rate_distortion(vae, x: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The two halves of the negative ELBO on ``x``, per example, in nats:
    ``rate`` = KL(q(z|x) || p(z)) (what the code costs) and ``distortion`` = -E_q[log p(x|z)]
    (one sample of z per example); ``elbo`` = -(rate + distortion)."""
    _need_vae(vae, "rate and distortion")
    xt = _as_tensor(x, vae)
    g = torch.Generator(device=xt.device).manual_seed(int(seed))
    out = vae(xt, sample=True, generator=g)  # forward does not corrupt: only loss_terms does, in training
    distortion = float(vae.recon_term(out, xt))
    rate = float(kl_per_dim(vae, x).sum())
    return {"rate": rate, "distortion": distortion, "elbo": -(rate + distortion)}
