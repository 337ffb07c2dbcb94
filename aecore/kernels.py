"""Dense layers y = x Wᵀ + b on the fastest float32 matrix product this CPU has.

PyTorch's CPU build sends float32 ``F.linear`` and ``torch.mm`` to MKL's sgemm. On a Zen 5
AMD EPYC (512-bit FMA units) MKL ran single autoencoder layers (batch 256) at 190-210 GFLOP/s
while oneDNN, which torch also ships, ran the same float32 products at 370-480 GFLOP/s, with
the same error against a float64 product. On a Zen 4 EPYC (256-bit units) the two ran nearly
alike (MKL 100-195, oneDNN 107-213 GFLOP/s on 1-2 threads), and the weight gradient of a wide
output layer, whose gᵀ oneDNN copies first, was slower on oneDNN (760 vs 520 µs for 784 x 256
at batch 256); the rules below were tuned on the Zen 5 host. On a Zen 3 EPYC (AVX2, no AVX-512)
MKL was the faster one (100-136 against 85-128 GFLOP/s per model at batch 128-256), and the
canonical loop trained about 10 % slower on oneDNN than on MKL. On an Intel Xeon with AVX-512
and AMX (2 cores) MKL, Intel's own library, was the faster one again (257-328 against 191-278
GFLOP/s over two runs), and the trainer ran 1.21-1.47x the canonical loop on MKL against
1.03-1.23x on oneDNN (medians per model and batch). So oneDNN is the default only on an AMD
CPU where torch reports AVX-512 (``torch.backends.cpu.get_cpu_capability()``; the vendor from
/proc/cpuinfo): the two CPUs where it won are such, the two where it lost are not.
bench/training.py measures both kernels per model on the machine it runs on.
``linear`` uses oneDNN for 2-D float32 inputs on the CPU, forward and backward, when the
product is big enough to gain (``MIN_MACS``), and ``F.linear`` everywhere else (small layers,
other devices, autocast, bfloat16). Its backward is first-order only: no model here
differentiates a gradient, and a second derivative raises rather than coming out wrong.

    AECORE_LINEAR=auto    oneDNN where it applies on an AMD CPU with AVX-512 (the default)
    AECORE_LINEAR=onednn  oneDNN where it applies, whatever the CPU
    AECORE_LINEAR=aten    always F.linear (PyTorch's default kernels)

``use("aten")`` switches for a block (the benchmark's canonical loop runs under it).
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

BACKENDS = ("auto", "onednn", "aten")
# oneDNN costs ~10 µs more per call than MKL: products under this many multiply-adds
# (batch x in x out) stay with F.linear. At 2^21 the two kernels tie on this CPU (batch 256,
# 400 x 20: 29 vs 33 µs); the digits set's 64-d layers are far below it (14 vs 4 µs).
MIN_MACS = 1 << 21
# The weight gradient gᵀx is slower on oneDNN when x is narrow (256 x 20: 72 vs 33 µs).
MIN_GRAD_WIDTH = 128
_state = threading.local()


def _onednn_op():
    """oneDNN's float32 inner product (a private torch op, used by inductor), if this torch
    build has it and it computes x wᵀ + b correctly for plain and transposed inputs; else None."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return None
        x = torch.arange(6.0).reshape(2, 3)  # (B, I)
        w = torch.arange(12.0).reshape(4, 3)  # (O, I)
        b = torch.arange(4.0)
        g = torch.arange(8.0).reshape(2, 4)  # (B, O)
        ok = (torch.equal(op(x, w, b, "none", [], ""), x @ w.T + b)  # forward
              and torch.equal(op(g, w.t(), None, "none", [], ""), g @ w)  # input gradient
              and torch.equal(op(g.t(), x.t(), None, "none", [], ""), g.T @ x))  # weight gradient
    except Exception:  # noqa: BLE001 - a missing or changed private op: fall back to F.linear
        return None
    return op if ok else None


_OP = _onednn_op()


def _env_backend() -> str:
    raw = os.environ.get("AECORE_LINEAR", "").strip().lower() or "auto"
    if raw not in BACKENDS:
        raise ValueError(f"AECORE_LINEAR={raw!r} must be one of {', '.join(BACKENDS)}")
    return raw


def backend() -> str:
    """The backend in force in this thread: ``use(...)``'s, else AECORE_LINEAR's."""
    return getattr(_state, "backend", None) or _env_backend()


@functools.cache  # asked on every big layer call; the CPU does not change under a process
def cpu_capability() -> str:
    """The widest vector instruction set torch's CPU kernels use here: "AVX512", "AVX2", "DEFAULT"..."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - an old torch without it: no preference
        return "unknown"


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor_id from /proc/cpuinfo ("AuthenticAMD", "GenuineIntel"...); "unknown" where
    there is none (another OS or architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip() or "unknown"
    except OSError:
        pass
    return "unknown"


def auto_prefers_onednn() -> bool:
    """Whether ``auto`` picks oneDNN on this CPU: an AMD one with AVX-512 (on an Intel one MKL, its
    maker's own library, was faster; on one without AVX-512 too)."""
    return cpu_vendor() == "AuthenticAMD" and cpu_capability().upper().startswith("AVX512")


def bf16_units() -> bool | None:
    """Whether this x86 CPU has bfloat16 units (AVX512-BF16 or AMX); None where it cannot be told
    (another architecture, or a torch without the probes)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i686"):
        return None
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return None


def bf16_warning(has_units: bool | None = None) -> str | None:
    """What to tell someone who picks bfloat16 on this CPU, or None when there is nothing to say."""
    has_units = bf16_units() if has_units is None else has_units
    if has_units is not False:
        return None
    return ("this CPU has no bfloat16 units (AVX512-BF16 or AMX), so bfloat16 products are emulated: "
            "on such a CPU (a Zen 3 EPYC) training ran at about a tenth of float32's speed; use float32")


def chosen() -> str:
    """The float32 CPU kernel ``linear`` uses for big products in this thread: "onednn" or "aten"."""
    name = backend()
    if name == "auto":
        name = "onednn" if auto_prefers_onednn() else "aten"
    return name if _OP is not None else "aten"


@contextlib.contextmanager
def use(name: str):
    """Run a block with backend ``name`` (one of ``BACKENDS``) in this thread."""
    if name not in BACKENDS:
        raise ValueError(f"linear backend {name!r} must be one of {', '.join(BACKENDS)}")
    old = getattr(_state, "backend", None)
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = old


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def available(device: str | torch.device = "cpu") -> bool:
    """Whether oneDNN's matrix product is there for ``device`` (CPU only)."""
    return _OP is not None and torch.device(device).type == "cpu"


def onednn_applies(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> bool:
    """Whether ``linear(x, w, b)`` takes the oneDNN path."""
    return (available(x.device) and available(w.device) and x.ndim == 2 and w.ndim == 2
            and x.dtype == torch.float32 and w.dtype == torch.float32
            and (b is None or (b.dtype == torch.float32 and b.device.type == "cpu"))
            and x.shape[0] * x.shape[1] * w.shape[0] >= MIN_MACS
            and not _autocast_on() and chosen() == "onednn")


def mm_t(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a bᵀ (+ bias) by oneDNN; a (M, K), b (N, K), any strides (transposed views run at full speed)."""
    return _OP(a, b, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(x, w, b):
        return mm_t(x, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b = inputs
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        return linear_backward(x, w, g, need_x, need_w, ctx.has_bias and need_b, onednn=True)


def linear_backward(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor, need_x: bool = True, need_w: bool = True,
                    need_b: bool = True, onednn: bool | None = None):
    """The gradients (g w, gᵀ x, Σ_b g) of y = x wᵀ + b for dL/dy = g (B, O), each None where not
    needed, on the kernel ``linear`` uses for this product (``onednn``: None asks ``onednn_applies``)."""
    if onednn is None:
        onednn = onednn_applies(x, w)
    gx = gw = gb = None
    if need_x:                                             # (B, O) (O, I) -> (B, I)
        gx = mm_t(g, w.t()) if onednn else g.mm(w)
    if need_w:                                             # (O, B) (B, I) -> (O, I)
        gw = mm_t(g.t(), x.t()) if onednn and x.shape[1] >= MIN_GRAD_WIDTH else g.t().mm(x)
    if need_b:
        gb = g.sum(0)
    return gx, gw, gb


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None,
           onednn: bool | None = None) -> torch.Tensor:
    """``F.linear(x, w, b)``: x (B, I), w (O, I), b (O,) -> (B, O), by oneDNN where it applies
    (``onednn``: what ``onednn_applies(x, w, b)`` says, for a caller that has asked already)."""
    if not (onednn_applies(x, w, b) if onednn is None else onednn):
        return F.linear(x, w, b)
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return _Linear.apply(x, w, b)
    return mm_t(x, w, b)
