"""The plain autoencoder and the variants that differ from it by one component.

    h = f(x) = act(W x + b)          encoder, W: (K, D)
    x̂ = g(h) = out(W* h + c)         decoder, W*: (D, K), W* = Wᵀ when tied
    loss = ℓ(x̂, x) + λ Ω(h)

Sparse, denoising and contractive autoencoders are this class plus a penalty or a
corruption; ``deep`` stacks layers D -> hidden... -> K with a mirrored decoder and a linear
code layer (as Hinton & Salakhutdinov 2006). Nothing here copies ``forward``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import objectives
from ..corruption import corrupt
from ..kernels import linear
from ..registry import register

ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda a: a, "sigmoid": torch.sigmoid, "relu": F.relu, "tanh": torch.tanh,
}


class AEOutput(NamedTuple):
    code: torch.Tensor     # (B, K) h = f(x); the mean μ for the VAE
    recon: torch.Tensor | None  # (B, D) x̂; None when the caller asked for the logits only
    logits: torch.Tensor   # (B, D) decoder pre-activation (x̂ = sigmoid(logits) for sigmoid output)
    pre: torch.Tensor      # (B, K) code pre-activation a = W x + b (last encoder layer)
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None


def glorot_(w: torch.Tensor, generator: torch.Generator | None) -> None:
    fan_out, fan_in = w.shape
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w.uniform_(-bound, bound, generator=generator)


class Penalty(NamedTuple):
    """A regularizer Ω: a named term computed from the model, the (corrupted) input and the output."""
    name: str
    fn: Callable  # (model, x_in, out: AEOutput) -> scalar tensor


SPARSITY = Penalty("sparsity", lambda m, x, out: objectives.l1_sparsity(out.code))
CONTRACTIVE = Penalty(
    "contractive",
    lambda m, x, out: objectives.contractive_penalty(m.enc_w[-1], out.pre, out.code, m.code_activation))


class Autoencoder(nn.Module):
    def __init__(self, cfg, input_dim: int, penalty: Penalty | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg
        self.input_dim = input_dim
        self.penalty = penalty
        dims = [input_dim, *cfg.hidden, cfg.code_size]
        self.dims = dims
        # encoder layer i maps dims[i] -> dims[i+1]
        self.enc_w = nn.ParameterList([nn.Parameter(torch.empty(o, i)) for i, o in zip(dims[:-1], dims[1:])])
        self.enc_b = nn.ParameterList([nn.Parameter(torch.zeros(o)) for o in dims[1:]])
        # decoder layer j maps dims[-1-j] -> dims[-2-j]; when tied it reuses enc_w[-1-j]ᵀ
        self.dec_w = nn.ParameterList(
            [] if cfg.tied else [nn.Parameter(torch.empty(i, o)) for i, o in zip(dims[:-1], dims[1:])][::-1])
        self.dec_b = nn.ParameterList([nn.Parameter(torch.zeros(i)) for i in dims[:-1]][::-1])
        self.activation = cfg.activation
        # deep stacks use a linear code layer; a single layer uses the chosen activation
        self.code_activation = "linear" if cfg.hidden else cfg.activation
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for w in [*self.enc_w, *self.dec_w]:
            glorot_(w, generator)

    @property
    def output_bias(self) -> nn.Parameter:
        """c of the last decoder layer (D,): x̂ = output(... + c)."""
        return self.dec_b[-1]

    # --- the two halves -------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        n = len(self.enc_w)
        for i, (w, b) in enumerate(zip(self.enc_w, self.enc_b)):
            pre = linear(h, w, b)  # (B, dims[i+1])
            h = ACT[self.code_activation if i == n - 1 else self.activation](pre)
        return pre, h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)[1]

    def decoder_weights(self) -> list[torch.Tensor]:
        """Decoder weights from the code outwards, each (out, in)."""
        return [w.t() for w in reversed(self.enc_w)] if self.cfg.tied else list(self.dec_w)

    def decode_logits(self, h: torch.Tensor) -> torch.Tensor:
        ws = self.decoder_weights()
        for j, (w, c) in enumerate(zip(ws, self.dec_b)):
            h = linear(h, w, c)
            if j < len(ws) - 1:
                h = ACT[self.activation](h)
        return h  # (B, D)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return ACT[self.cfg.output](self.decode_logits(h))

    def forward(self, x: torch.Tensor, recon: bool = True) -> AEOutput:
        """``recon=False`` leaves ``out.recon`` None (a cross-entropy loss needs only the logits)."""
        pre, h = self._encode(x)
        logits = self.decode_logits(h)
        return AEOutput(h, ACT[self.cfg.output](logits) if recon else None, logits, pre)

    # --- training interface used by the Trainer ---------------------------------------------
    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.cfg.noise, self.cfg.noise_level, generator)

    def recon_term(self, out: AEOutput, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.loss == "cross-entropy":
            return objectives.cross_entropy(out.logits, x, mask)
        return objectives.squared_error(out.recon, x, mask)

    def loss_terms(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Unweighted named loss terms on a batch; the input is corrupted only in training mode."""
        x_in = self.corrupt(x, generator) if self.training else x
        out = self(x_in, recon=self.cfg.loss != "cross-entropy")
        terms = {"recon": self.recon_term(out, x, mask)}
        if self.penalty is not None:
            terms[self.penalty.name] = self.penalty.fn(self, x_in, out)
        return terms

    def loss_and_grads(self, x: torch.Tensor, generator: torch.Generator | None = None,
                       weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """``loss_terms`` (detached) with the weighted sum's gradients left in each ``.grad``,
        written out without autograd (``aecore.backprop``, where ``backprop.reason`` allows)."""
        from ..backprop import loss_and_grads

        return loss_and_grads(self, x, generator, weights)

    def loss_weights(self) -> dict[str, float]:
        w = {"recon": 1.0}
        if self.penalty is not None:
            w[self.penalty.name] = float(self.cfg.reg)
        return w

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).recon

    # --- what the views show ---------------------------------------------------------------
    @property
    def W(self) -> torch.Tensor:
        """First encoder layer, (K1, D): each row is a filter over the input."""
        return self.enc_w[0]

    @property
    def decoder_weight(self) -> torch.Tensor:
        """Last decoder layer, (D, K_last): each column is what one unit writes into the input."""
        return self.decoder_weights()[-1]

    @property
    def is_linear(self) -> bool:
        """A single linear layer each way: its reconstructions span a K-dim subspace (compare with PCA)."""
        return not self.cfg.hidden and self.cfg.activation == "linear" and self.cfg.output == "linear"


def _plain(cfg, input_dim, generator=None):
    return Autoencoder(cfg, input_dim, generator=generator)


_NOISE = ("noise", "noise_level", "tied")  # every single-stack autoencoder can tie and denoise
register("linear", summary="h = Wx + b, x̂ = W*h + c: learns PCA's subspace",
         defaults=dict(activation="linear", output="linear", loss="squared"), uses=_NOISE)(_plain)
register("tied", summary="linear with tied weights W* = Wᵀ",
         defaults=dict(activation="linear", output="linear", loss="squared", tied=True), uses=_NOISE)(_plain)
register("sigmoid", summary="h = sigmoid(Wx + b), sigmoid output, cross-entropy",
         defaults=dict(activation="sigmoid"), uses=_NOISE)(_plain)
register("relu", summary="h = relu(Wx + b), sigmoid output, cross-entropy",
         defaults=dict(activation="relu"), uses=_NOISE)(_plain)
register("deep", summary="D -> hidden... -> K (linear code) with a mirrored decoder",
         defaults=dict(activation="relu", hidden=(256, 128)), uses=("hidden",) + _NOISE)(_plain)
register("denoising", summary="reconstruct x from a corrupted x̃ (Gaussian, masking or salt-and-pepper)",
         defaults=dict(activation="sigmoid", noise="masking", noise_level=0.25), uses=_NOISE)(_plain)


@register("sparse", summary="L1 penalty λ Σ|h_k| on the code", defaults=dict(activation="relu", reg=0.01),
          uses=("reg",) + _NOISE)
def _sparse(cfg, input_dim, generator=None):
    return Autoencoder(cfg, input_dim, penalty=SPARSITY, generator=generator)


@register("contractive", summary="penalty λ ||∂h/∂x||²_F (Frobenius norm of the encoder Jacobian)",
          defaults=dict(activation="sigmoid", reg=0.1), uses=("reg",) + _NOISE)
def _contractive(cfg, input_dim, generator=None):
    return Autoencoder(cfg, input_dim, penalty=CONTRACTIVE, generator=generator)
