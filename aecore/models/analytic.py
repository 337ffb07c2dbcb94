"""The dense autoencoders' backward pass written out: a training step's loss terms and gradients
without autograd.

Autograd records each operation of the forward pass and then runs its derivative, each a pass over
its own tensors; on a 2-core CPU, for 784-256-784 at batch 256, the step's five matrix products
took about 1.9 ms of its 3.3 ms and the rest went on those passes. For a stack of dense layers with
elementwise activations the gradient is short enough to write down (backpropagation by hand), and
written down it makes fewer passes: the activations are applied in place, the loss's gradient is
formed in the logits' own buffer, and each activation's derivative is one fused kernel.

    forward   a_l = h_{l-1} W_lᵀ + b_l,  h_l = act_l(a_l),  h_0 = x̃ (the input, corrupted when
              the model denoises),  z = a_L (the output layer's logits)
    loss      cross-entropy  Σ [softplus(z) - x z] / B       dL/dz = (σ(z) - x) / B
              squared        Σ (x̂ - x)² / B, x̂ = out(z)       dL/dz = 2 (x̂ - x) out'(z) / B
              sparsity       Σ |h_c| / B on the code h_c      adds λ sign(h_c) / B to dL/dh_c
    backward  δ_L = dL/dz;  ∂L/∂W_l = δ_lᵀ h_{l-1};  ∂L/∂b_l = Σ_b δ_l;
              δ_{l-1} = (δ_l W_l) ⊙ act'(h_{l-1}), with act' from the layer's output
              (sigmoid h(1 - h), tanh 1 - h², relu [h > 0], linear 1)
    tied      W* = Wᵀ: an encoder weight also gets its decoder layer's gradient, transposed

``loss_and_grads`` returns the same loss terms as ``Autoencoder.loss_terms`` (same values, same
noise draws from the same generator) and leaves in each parameter's ``.grad`` what autograd's
backward of the weighted sum would: the tests compare both in float64 for every variant it takes.
``reason`` says why a model or run goes through autograd instead (the Trainer asks it).
"""
from __future__ import annotations

import os

import torch

from .. import kernels, objectives
from .autoencoder import SPARSITY, Autoencoder

BACKWARDS = ("analytic", "autograd")
ACTIVATIONS = ("linear", "sigmoid", "relu", "tanh")
_aten = torch.ops.aten


def backward_setting(value: str | None = None) -> str:
    """``value`` if given, else ``$AECORE_BACKWARD``: "analytic" (the default: written-out gradients
    where ``reason`` allows) or "autograd" (always autograd, for a comparison)."""
    raw = (value if value is not None else os.environ.get("AECORE_BACKWARD", "")).strip().lower() or "analytic"
    if raw not in BACKWARDS:
        raise ValueError(f"AECORE_BACKWARD={raw!r} must be one of {', '.join(BACKWARDS)}")
    return raw


def reason(model, precision: str = "float32", device: torch.device | str = "cpu",
           setting: str | None = None) -> str | None:
    """Why a training step of ``model`` goes through autograd rather than ``loss_and_grads``; None
    when it need not. Only the CPU is taken: on a GPU the step is replayed as a CUDA graph, where
    autograd's own cost does not show."""
    if backward_setting(setting) == "autograd":
        return "turned off (AECORE_BACKWARD=autograd)"
    if type(model) is not Autoencoder:
        return f"{type(model).__name__}: written out for the dense autoencoders only"
    if model.penalty is not None and model.penalty is not SPARSITY:
        return f"the {model.penalty.name} penalty's gradient is left to autograd"
    cfg = model.cfg
    acts = {model.activation, model.code_activation, cfg.output}
    if not acts <= set(ACTIVATIONS) or cfg.output not in ("linear", "sigmoid"):
        return f"activation {model.activation!r} / output {cfg.output!r} is not written out"
    if cfg.loss not in ("cross-entropy", "squared"):
        return f"loss {cfg.loss!r} is not written out"
    if precision != "float32":
        return f"precision {precision!r}: mixed precision's casts are left to autocast and autograd"
    if torch.device(device).type != "cpu":
        return f"written out for the CPU; this run is on {torch.device(device).type}"
    if any(not p.requires_grad for p in model.parameters()):
        return "some parameters are frozen"
    return None


def _act_(name: str, a: torch.Tensor) -> torch.Tensor:
    """act(a), in a's own buffer."""
    if name == "sigmoid":
        return a.sigmoid_()
    if name == "relu":
        return a.relu_()
    if name == "tanh":
        return a.tanh_()
    return a


def _act_backward(name: str, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g ⊙ act'(a) from the activation's output h = act(a), in one pass (autograd's own kernels)."""
    if name == "sigmoid":
        return _aten.sigmoid_backward(g, h)
    if name == "relu":
        return _aten.threshold_backward(g, h, 0)
    if name == "tanh":
        return _aten.tanh_backward(g, h)
    return g


@torch.no_grad()
def loss_and_grads(model: Autoencoder, x: torch.Tensor, generator: torch.Generator | None = None,
                   weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """``model.loss_terms(x, generator=generator)`` (detached), and in every parameter's ``.grad``
    the gradient of Σ weights[name] x term (``model.loss_weights()`` when not given), replacing
    what was there. The caller checks ``reason(model) is None`` first."""
    weights = model.loss_weights() if weights is None else weights
    cfg = model.cfg
    B = x.shape[0]
    x_in = model.corrupt(x, generator) if model.training else x
    n_enc = len(model.enc_w)
    ws = [*model.enc_w, *model.decoder_weights()]  # each (out, in); a tied decoder's are views
    bs = [*model.enc_b, *model.dec_b]
    acts = ([model.activation] * (n_enc - 1) + [model.code_activation]
            + [model.activation] * (len(ws) - n_enc - 1))  # the hidden layers' (the output's is apart)
    hs = [x_in]  # the input of each layer: h_0 = x̃, then every hidden layer's output
    onednn = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        onednn.append(kernels.onednn_applies(hs[-1], w, b))
        a = kernels.linear(hs[-1], w, b)
        if i < len(ws) - 1:
            hs.append(_act_(acts[i], a))
    z = a  # (B, D) logits
    terms = {}
    if cfg.loss == "cross-entropy":
        terms["recon"] = objectives.bernoulli_nll_value(z, x)
        g = z.sigmoid_().sub_(x).mul_(1.0 / B)  # the logits are not needed again: δ_L in their buffer
    else:
        recon = _act_(cfg.output, z)
        d = recon - x
        terms["recon"] = torch.dot(d.reshape(-1), d.reshape(-1)) / B
        g = _act_backward(cfg.output, d.mul_(2.0 / B), recon)
    code = hs[n_enc]
    lam = 0.0
    if model.penalty is SPARSITY:
        terms[SPARSITY.name] = code.abs().sum() / B
        lam = float(weights[SPARSITY.name])
    if weights.get("recon", 1.0) != 1.0:
        g = g * float(weights["recon"])

    w_grads: list[torch.Tensor] = [None] * len(ws)  # type: ignore[list-item]
    b_grads: list[torch.Tensor] = [None] * len(ws)  # type: ignore[list-item]
    for i in reversed(range(len(ws))):
        gx, w_grads[i], b_grads[i] = kernels.linear_backward(hs[i], ws[i], g, need_x=i > 0, onednn=onednn[i])
        if i == 0:
            break
        if i == n_enc and lam:  # hs[n_enc] is the code: the sparsity term's gradient joins here
            gx = gx.add_(code.sign(), alpha=lam / B)
        g = _act_backward(acts[i - 1], gx, hs[i])

    params_w = list(model.enc_w) + (list(model.dec_w) if not cfg.tied else [])
    grads_w = w_grads[:n_enc]
    if cfg.tied:  # decoder layer j is enc_w[n_enc - 1 - j]ᵀ
        for j, gw in enumerate(w_grads[n_enc:]):
            grads_w[n_enc - 1 - j] = grads_w[n_enc - 1 - j].add_(gw.t())
    else:
        grads_w = grads_w + w_grads[n_enc:]
    for p, gr in zip([*params_w, *model.enc_b, *model.dec_b], [*grads_w, *b_grads]):
        p.grad = gr
    return terms
