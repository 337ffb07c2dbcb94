"""The backward pass of the dense autoencoders and the VAE written out: a training step's loss
terms and gradients without autograd.

Autograd records each operation of the forward pass and then runs its derivative, each a pass over
its own tensors; on a 2-core CPU, for 784-256-784 at batch 256, the step's five matrix products
took about 1.9 ms of its 3.3 ms and the rest went on those passes. For a stack of dense layers with
elementwise activations the gradient is short enough to write down (backpropagation by hand), and
written down it makes fewer passes: the activations are applied in place, the loss's gradient is
formed in the logits' own buffer, and each activation's derivative is one fused kernel. On a
2-core Intel Xeon the Trainer then ran 784-256-784 at 1.10-1.17x, the VAE at 1.09-1.15x and the
deep 784-1000-500-250-30 at 1.035x the samples/s it reached on autograd (batches 128 and 256).

    forward   a_l = h_{l-1} W_lᵀ + b_l,  h_l = act_l(a_l),  h_0 = x̃ (the input, corrupted when
              the model denoises),  z = a_L (the output layer's logits)
    loss      cross-entropy  Σ [softplus(z) - x z] / B       dL/dz = (σ(z) - x) / B
              squared        Σ (x̂ - x)² / B, x̂ = out(z)       dL/dz = 2 (x̂ - x) out'(z) / B
              sparsity       Σ |h_c| / B on the code h_c      adds λ sign(h_c) / B to dL/dh_c
    backward  δ_L = dL/dz;  ∂L/∂W_l = δ_lᵀ h_{l-1};  ∂L/∂b_l = Σ_b δ_l;
              δ_{l-1} = (δ_l W_l) ⊙ act'(h_{l-1}), with act' from the layer's output
              (sigmoid h(1 - h), tanh 1 - h², relu [h > 0], linear 1)
    tied      W* = Wᵀ: an encoder weight also gets its decoder layer's gradient, transposed

The VAE adds its code layer: μ = h W_μᵀ + b_μ, ℓ = h W_ℓᵀ + b_ℓ (log σ²), z = μ + σ ⊙ ε with
σ = exp(ℓ / 2) while training (z = μ otherwise), and β KL = -β/2 Σ (1 + ℓ - μ² - e^ℓ) / B, so

    dL/dμ = dL/dz + β μ / B,   dL/dℓ = dL/dz ⊙ ε ⊙ σ / 2 + β (e^ℓ - 1) / (2B),
    dL/dh = dL/dμ W_μ + dL/dℓ W_ℓ

and a Gaussian decoder's -log N(x; x̂, I) = Σ (x̂ - x)² / (2B) + D/2 log 2π has dL/dz = (x̂ - x) out'(z) / B.

``loss_and_grads`` returns the same loss terms as the model's ``loss_terms`` (same values, same
noise draws from the same generator) and leaves in each parameter's ``.grad`` what autograd's
backward of the weighted sum would: the tests compare both in float64 for every variant it takes.
``reason`` says why a model or run goes through autograd instead (the Trainer asks it).
"""
from __future__ import annotations

import math
import os

import torch

from . import kernels, objectives
from .models.autoencoder import SPARSITY, Autoencoder
from .models.vae import VAE

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
    autograd's own cost does not show (and this code has not run on one)."""
    if backward_setting(setting) == "autograd":
        return "turned off (AECORE_BACKWARD=autograd)"
    if type(model) not in (Autoencoder, VAE):
        return f"{type(model).__name__}: written out for the dense autoencoders and the VAE only"
    if getattr(model, "penalty", None) is not None and model.penalty is not SPARSITY:
        return f"the {model.penalty.name} penalty's gradient is left to autograd"
    cfg = model.cfg
    acts = {model.activation, getattr(model, "code_activation", "linear"), cfg.output}
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


def _forward(ws, bs, acts, h, onednn):
    """Dense layers from h: [the input of each layer and every hidden layer's output] and the last
    layer's pre-activation; ``onednn`` gets whether each product ran on oneDNN."""
    hs = [h]
    for i, (w, b) in enumerate(zip(ws, bs)):
        onednn.append(kernels.onednn_applies(hs[-1], w, b))
        a = kernels.linear(hs[-1], w, b, onednn=onednn[-1])
        if i < len(ws) - 1:
            hs.append(_act_(acts[i], a))
    return hs, a


def _backward(ws, hs, acts, g, onednn, first_needs_x=False):
    """Back through the layers ``_forward`` ran, from g = dL/d(last pre-activation): the weight and
    bias gradients, and dL/d(input) when ``first_needs_x``."""
    w_grads, b_grads = [None] * len(ws), [None] * len(ws)
    gx = None
    for i in reversed(range(len(ws))):
        gx, w_grads[i], b_grads[i] = kernels.linear_backward(hs[i], ws[i], g, need_x=i > 0 or first_needs_x,
                                                             onednn=onednn[i])
        if i > 0:
            g = _act_backward(acts[i - 1], gx, hs[i])
    return w_grads, b_grads, gx


def _recon(cfg, z, x, weight=1.0, gaussian_const=False):
    """The reconstruction term from the logits z (B, D), and d(weight x term)/dz, formed in z's own
    buffer where it can be."""
    B = x.shape[0]
    if cfg.loss == "cross-entropy":
        value = objectives.bernoulli_nll_value(z, x)
        return value, z.sigmoid_().sub_(x).mul_(weight / B)  # the logits are not needed again
    recon = _act_(cfg.output, z)
    d = recon - x
    sse = torch.dot(d.reshape(-1), d.reshape(-1)) / B  # (one pass, where squared_error makes three)
    if gaussian_const:  # -log N(x; x̂, I): half the squared error plus D/2 log 2π
        return (0.5 * sse + 0.5 * x.shape[1] * math.log(2 * math.pi),
                _act_backward(cfg.output, d.mul_(weight / B), recon))
    return sse, _act_backward(cfg.output, d.mul_(2.0 * weight / B), recon)


@torch.no_grad()
def loss_and_grads(model, x: torch.Tensor, generator: torch.Generator | None = None,
                   weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """``model.loss_terms(x, generator=generator)`` (detached), and in every parameter's ``.grad``
    the gradient of Σ weights[name] x term (``model.loss_weights()`` when not given), replacing
    what was there. The caller checks ``reason(model) is None`` first."""
    weights = model.loss_weights() if weights is None else weights
    if isinstance(model, VAE):
        return _vae(model, x, generator, weights)
    cfg = model.cfg
    B = x.shape[0]
    x_in = model.corrupt(x, generator) if model.training else x
    enc_w, enc_b, dec_w = list(model.enc_w), list(model.enc_b), model.decoder_weights()  # a tied decoder's: views
    acts = [model.activation] * max(len(enc_w), len(dec_w))  # the hidden layers' (the code's and output's apart)
    onednn_enc, onednn_dec = [], []
    hs_enc, a = _forward(enc_w, enc_b, acts, x_in, onednn_enc)
    code = _act_(model.code_activation, a)
    hs_dec, logits = _forward(dec_w, list(model.dec_b), acts, code, onednn_dec)
    terms = {}
    terms["recon"], g = _recon(cfg, logits, x, float(weights.get("recon", 1.0)))
    lam = 0.0
    if model.penalty is SPARSITY:
        terms[SPARSITY.name] = objectives.l1_sparsity(code)
        lam = float(weights[SPARSITY.name])
    dec_wg, dec_bg, g_code = _backward(dec_w, hs_dec, acts, g, onednn_dec, first_needs_x=True)
    if lam:  # the sparsity term's gradient joins at the code
        g_code = g_code.add_(code.sign(), alpha=lam / B)
    enc_wg, enc_bg, _ = _backward(enc_w, hs_enc, acts, _act_backward(model.code_activation, g_code, code), onednn_enc)
    if cfg.tied:  # decoder layer j is enc_w[n - 1 - j]ᵀ: its gradient joins that encoder weight's
        for j, gw in enumerate(dec_wg):
            enc_wg[-1 - j] = enc_wg[-1 - j].add_(gw.t())
        dec_wg = []
    for p, gr in zip([*model.enc_w, *model.dec_w, *model.enc_b, *model.dec_b], [*enc_wg, *dec_wg, *enc_bg, *dec_bg]):
        p.grad = gr
    return terms


def _vae(model: VAE, x: torch.Tensor, generator, weights) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    B = x.shape[0]
    x_in = model.corrupt(x, generator) if model.training else x
    enc, dec = list(model.enc), list(model.dec)
    acts = [model.activation] * max(len(enc), len(dec))
    onednn_enc, onednn_dec, onednn_code = [], [], []
    h = x_in  # the heads' input: the last hidden layer's output
    if enc:
        hs_enc, a = _forward([m.weight for m in enc], [m.bias for m in enc], acts, x_in, onednn_enc)
        h = _act_(model.activation, a)
    for lin in (model.mu, model.logvar):
        onednn_code.append(kernels.onednn_applies(h, lin.weight, lin.bias))
    mu = kernels.linear(h, model.mu.weight, model.mu.bias, onednn=onednn_code[0])  # (B, K)
    logvar = kernels.linear(h, model.logvar.weight, model.logvar.bias, onednn=onednn_code[1])
    if model.training:  # drawn as sample_code draws it, after any corruption
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        sigma = torch.exp(0.5 * logvar)
        z = mu + sigma * eps
    else:
        z = mu
    hs_dec, logits = _forward([m.weight for m in dec], [m.bias for m in dec], acts, z, onednn_dec)
    terms = {}
    terms["recon"], g = _recon(cfg, logits, x, float(weights.get("recon", 1.0)), gaussian_const=True)
    terms["kl"] = objectives.gaussian_kl(mu, logvar)  # ((B, K): small)
    var = logvar.exp()
    beta = float(weights["kl"])
    dec_w, dec_b, dz = _backward([m.weight for m in dec], hs_dec, acts, g, onednn_dec, first_needs_x=True)
    dmu = dz.add(mu, alpha=beta / B)
    dlv = var.sub_(1.0).mul_(0.5 * beta / B)  # e^ℓ is not needed again
    if model.training:
        dlv.addcmul_(dz, eps.mul_(sigma).mul_(0.5))
    gh, w_mu, b_mu = kernels.linear_backward(h, model.mu.weight, dmu, need_x=bool(enc), onednn=onednn_code[0])
    gh2, w_lv, b_lv = kernels.linear_backward(h, model.logvar.weight, dlv, need_x=bool(enc), onednn=onednn_code[1])
    enc_w = enc_b = []
    if enc:
        g = _act_backward(model.activation, gh.add_(gh2), h)
        enc_w, enc_b, _ = _backward([m.weight for m in enc], hs_enc, acts, g, onednn_enc)
    for lin, gw, gb in [*zip(enc, enc_w, enc_b), (model.mu, w_mu, b_mu), (model.logvar, w_lv, b_lv),
                        *zip(dec, dec_w, dec_b)]:
        lin.weight.grad, lin.bias.grad = gw, gb
    return terms
