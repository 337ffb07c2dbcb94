"""Loss terms. Each returns a scalar tensor: a per-example sum over dimensions, averaged
over the batch (so ``squared_error`` is in the per-image SSE unit of Hinton & Salakhutdinov
2006). A model's loss is a dict of these named terms; the trainer weights and sums them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["squared_error", "cross_entropy", "bernoulli_nll_value", "l1_sparsity", "contractive_penalty",
           "activation_derivative", "gaussian_kl", "gaussian_nll"]


def _f32(t: torch.Tensor) -> torch.Tensor:
    """bfloat16 / float16 (a mixed-precision forward pass) up to float32; other dtypes unchanged."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _observed(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The target with unobserved entries replaced by the (detached) prediction, so a missing
    value stored as NaN neither poisons the loss nor its gradient (NaN * 0 is NaN)."""
    return x if mask is None else torch.where(mask.bool(), x, ref.detach())


def _masked_sum(per_entry: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    # per_entry: (B, D); mask: (B, D) with 1 = observed, 0 = missing (no loss, no gradient)
    if mask is not None:
        per_entry = per_entry * mask
    return per_entry.sum(dim=1).mean()


def squared_error(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum_d (x̂_d - x_d)^2, mean over the batch; only observed entries when ``mask`` is given."""
    recon = _f32(recon)
    return _masked_sum((recon - _observed(x, recon, mask)).square(), mask)


def cross_entropy(logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bernoulli cross-entropy -sum_d [x_d log x̂_d + (1-x_d) log(1-x̂_d)] with x̂ = sigmoid(logits),
    computed from the logits for numerical stability; x must lie in [0, 1]."""
    logits = _f32(logits)  # bfloat16 logits (mixed precision) lose ~3 digits in the log terms
    if mask is None and logits.shape == x.shape and logits.ndim == 2 and x.dtype == logits.dtype:
        return _BernoulliNLL.apply(logits, x)
    x = _observed(x, torch.sigmoid(logits), mask)
    return _masked_sum(F.binary_cross_entropy_with_logits(logits, x, reduction="none"), mask)


def bernoulli_nll_value(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``cross_entropy(logits, x)``'s value for (B, D) tensors of one dtype, without a graph:
    sum_{b,d} [softplus(l) - x l] / B. Its gradient in the logits is (σ(l) - x) / B."""
    flat_l, flat_x = logits.reshape(-1), x.reshape(-1)
    # softplus(l) returns l above its threshold, dropping log1p(e^-l) < e^-t: below float32's
    # resolution at t = 20, below float64's at t = 40
    t = 20.0 if logits.dtype != torch.float64 else 40.0
    return (F.softplus(logits, threshold=t).sum() - torch.dot(flat_x, flat_l)) / logits.shape[0]


class _BernoulliNLL(torch.autograd.Function):
    """sum_{b,d} [softplus(l) - x l] / B, the same value as binary_cross_entropy_with_logits summed
    over d and averaged over b (-x log σ(l) - (1-x) log(1-σ(l)) = softplus(l) - x l), in three
    passes over (B, D) instead of about eight, and gradient (σ(l) - x) / B in three more."""

    @staticmethod
    def forward(logits, x):
        return bernoulli_nll_value(logits, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        logits, x = ctx.saved_tensors
        gl = gx = None
        if ctx.needs_input_grad[0]:
            gl = torch.sigmoid(logits).sub_(x).mul_(g / logits.shape[0])
        if ctx.needs_input_grad[1]:  # d/dx = -l / B (a target that is itself trained)
            gx = logits * (-g / logits.shape[0])
        return gl, gx


def gaussian_nll(recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log N(x; x̂, I) = 0.5 ||x - x̂||^2 + D/2 log 2π (unit-variance Gaussian decoder), in nats."""
    recon = _f32(recon)
    per_entry = 0.5 * (recon - _observed(x, recon, mask)).square() + 0.5 * math.log(2 * math.pi)
    return _masked_sum(per_entry, mask)


def l1_sparsity(h: torch.Tensor) -> torch.Tensor:
    """Ω(h) = sum_k |h_k|, mean over the batch."""
    return _f32(h).abs().sum(dim=1).mean()


def activation_derivative(name: str, pre: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """dh/da elementwise for h = act(a); uses the already computed h where cheaper."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h.square()
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    if name == "linear":
        return torch.ones_like(pre)
    raise ValueError(f"activation={name!r} has no derivative here")


def contractive_penalty(weight: torch.Tensor, pre: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """||J_f(x)||_F^2 for h = act(W x + b) (Rifai et al. 2011, eq. 2).

    J = diag(act'(a)) W, so ||J||_F^2 = sum_k act'(a_k)^2 sum_d W_kd^2: no Jacobian is formed.
    weight: (K, D); pre, h: (B, K). Mean over the batch.
    """
    d = activation_derivative(activation, _f32(pre), _f32(h))  # (B, K)
    row_norms = weight.square().sum(dim=1)  # (K,)
    return (d.square() * row_norms).sum(dim=1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) summed over code dimensions, mean over the batch.

    Kingma & Welling 2014, Appendix B: -1/2 sum_k (1 + log σ_k^2 - μ_k^2 - σ_k^2).
    """
    mu, logvar = _f32(mu), _f32(logvar)
    return (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(dim=1).mean()
