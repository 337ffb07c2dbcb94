"""aecore.kernels.linear: oneDNN's float32 product must be F.linear, forward and backward."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aecore import kernels
from aecore.config import ModelConfig
from aecore.models import build_model

needs_onednn = pytest.mark.skipif(not kernels.available("cpu"), reason="this torch build has no oneDNN linear")


@pytest.fixture(autouse=True)
def every_size(monkeypatch):
    """Small shapes keep these tests fast; the size threshold has its own test."""
    monkeypatch.setattr(kernels, "MIN_MACS", 0)


@pytest.fixture(autouse=True)
def onednn_on_any_cpu(monkeypatch):
    """The oneDNN path is tested on every CPU; which CPUs use it by default has its own test."""
    monkeypatch.setenv("AECORE_LINEAR", "onednn")


def _exact(x, w, b):
    y = x.double() @ w.double().T
    return y if b is None else y + b.double()


@needs_onednn
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_is_x_w_transposed_plus_b_to_float32_accuracy(tied, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 50, generator=g)
    w = torch.randn(50, 23, generator=g).T if tied else torch.randn(23, 50, generator=g)  # a transposed view when tied
    b = torch.randn(23, generator=g) if bias else None
    assert kernels.onednn_applies(x, w, b)
    y = kernels.linear(x, w, b)
    assert y.shape == (37, 23) and y.dtype == torch.float32
    err = (y.double() - _exact(x, w, b)).abs().max().item()
    assert err < 1e-4, err
    # as accurate as PyTorch's default kernel, not a lower-precision product
    assert err < 20 * (F.linear(x, w, b).double() - _exact(x, w, b)).abs().max().item() + 1e-5


@needs_onednn
@pytest.mark.parametrize("need_x", [False, True])
def test_gradients_match_autograd_of_f_linear(need_x):
    g = torch.Generator().manual_seed(1)
    x0, w0, b0 = torch.randn(64, 30, generator=g), torch.randn(20, 30, generator=g), torch.randn(20, generator=g)
    up = torch.randn(64, 20, generator=g)  # dL/dy

    def grads(fn):
        x, w, b = x0.clone().requires_grad_(need_x), w0.clone().requires_grad_(), b0.clone().requires_grad_()
        (fn(x, w, b) * up).sum().backward()
        return x.grad, w.grad, b.grad

    ours, ref = grads(kernels.linear), grads(F.linear)
    for a, r in zip(ours, ref):
        if r is None:
            assert a is None
        else:
            torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    # and against the formulas: dW = upᵀ x, db = Σ_rows up, dx = up W
    torch.testing.assert_close(ours[1].double(), up.double().T @ x0.double(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours[2], up.sum(0))


@needs_onednn
def test_a_tied_weight_gets_the_gradient_of_both_its_uses():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(16, 12, generator=g)
    grads = {}
    for name in ("onednn", "aten"):
        w = torch.randn(5, 12, generator=torch.Generator().manual_seed(3)).requires_grad_()
        with kernels.use(name):
            h = torch.sigmoid(kernels.linear(x, w))
            out = kernels.linear(h, w.t())
            ((out - x) ** 2).sum().backward()
        grads[name] = w.grad
    torch.testing.assert_close(grads["onednn"], grads["aten"], rtol=1e-5, atol=1e-5)


@needs_onednn
def test_the_training_graph_runs_through_onednn_and_a_second_derivative_is_refused():
    x = torch.randn(8, 6)
    w = torch.randn(4, 6, requires_grad=True)
    y = kernels.linear(x, w)
    assert "_Linear" in type(y.grad_fn).__name__
    (gw,) = torch.autograd.grad(y.square().sum(), w, create_graph=True)
    with pytest.raises(RuntimeError):  # once_differentiable: an error, never a silently wrong Hessian
        torch.autograd.grad(gw.sum(), w)


@needs_onednn
def test_small_products_stay_with_f_linear_and_narrow_inputs_get_their_weight_gradient_right(monkeypatch):
    monkeypatch.setattr(kernels, "MIN_MACS", 1 << 21)
    assert not kernels.onednn_applies(torch.randn(64, 64), torch.randn(32, 64))  # the digits set's layers
    assert kernels.onednn_applies(torch.randn(256, 784), torch.randn(256, 784))
    assert "_Linear" not in type(kernels.linear(torch.randn(64, 64), torch.randn(32, 64, requires_grad=True)).grad_fn).__name__
    # a narrow input (x width < MIN_GRAD_WIDTH) takes the other weight-gradient kernel: same gradient
    g = torch.Generator().manual_seed(7)
    x, up = torch.randn(2048, 20, generator=g), torch.randn(2048, 400, generator=g)
    grads = []
    for fn in (kernels.linear, F.linear):
        w = torch.randn(400, 20, generator=torch.Generator().manual_seed(8)).requires_grad_()
        y = fn(x, w)
        (y * up).sum().backward()
        grads.append(w.grad)
    assert "_Linear" in type(kernels.linear(x, w).grad_fn).__name__
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-4)


def test_other_cases_fall_back_to_f_linear():
    x, w = torch.randn(4, 6), torch.randn(3, 6)
    assert not kernels.onednn_applies(x.double(), w.double())
    assert not kernels.onednn_applies(torch.randn(2, 4, 6), w)  # batched 3-D input
    with kernels.use("aten"):
        assert not kernels.onednn_applies(x, w)
        assert kernels.backend() == "aten"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernels.onednn_applies(x, w)
        assert kernels.linear(x, w).dtype == torch.bfloat16  # autocast's product, as F.linear gives
    y = kernels.linear(torch.randn(2, 4, 6), w)
    assert y.shape == (2, 4, 3)


def test_the_backend_setting_is_checked_and_named(monkeypatch):
    monkeypatch.setenv("AECORE_LINEAR", "aten")
    assert kernels.backend() == "aten" and not kernels.onednn_applies(torch.randn(4, 6), torch.randn(3, 6))
    monkeypatch.setenv("AECORE_LINEAR", "mkl")
    with pytest.raises(ValueError, match="AECORE_LINEAR='mkl'"):
        kernels.linear(torch.randn(4, 6), torch.randn(3, 6))
    with pytest.raises(ValueError, match="'blas'"):
        with kernels.use("blas"):
            pass


@needs_onednn
@pytest.mark.parametrize("variant,extra", [("sigmoid", {}), ("tied", {}), ("contractive", {}),
                                           ("deep", {"hidden": (20, 10)}), ("vae", {"hidden": (16,)})])
def test_a_model_trains_the_same_on_either_backend(variant, extra):
    """Five Adam steps with oneDNN and with PyTorch's kernels land on the same weights."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(32, 25, generator=g)
    finals = {}
    for name in ("onednn", "aten"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(variant=variant, code_size=6, **extra), 25,
                            generator=torch.Generator().manual_seed(5))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        weights = model.loss_weights()
        with kernels.use(name):
            for _ in range(5):
                terms = model.loss_terms(x, generator=torch.Generator().manual_seed(6))
                loss = sum(weights[k] * v for k, v in terms.items())
                opt.zero_grad()
                loss.backward()
                opt.step()
        finals[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(finals["onednn"], finals["aten"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fake", [
    lambda x, w, b, *rest: x @ w.T,  # ignores the bias
    lambda *a: (_ for _ in ()).throw(RuntimeError("could not create a primitive descriptor")),
], ids=["wrong", "raises"])
def test_a_private_op_that_is_missing_or_wrong_leaves_f_linear_in_charge(monkeypatch, fake):
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", fake, raising=False)
    assert kernels._onednn_op() is None
    monkeypatch.setattr(kernels, "_OP", kernels._onednn_op())
    assert not kernels.available() and not kernels.onednn_applies(torch.randn(4, 6), torch.randn(3, 6))
    torch.testing.assert_close(kernels.linear(torch.ones(2, 3), torch.ones(4, 3), torch.ones(4)), torch.full((2, 4), 4.0))


def test_the_check_at_import_accepts_the_op_where_torch_has_onednn():
    """Without this, a check that wrongly refused the op would only show as skipped tests."""
    try:
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        pytest.skip("this torch build has no torch.ops.mkldnn._linear_pointwise")
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has oneDNN switched off")
    assert kernels.available("cpu") and not kernels.available("cuda")


@needs_onednn
@pytest.mark.parametrize("vendor, capability, expected", [
    ("AuthenticAMD", "AVX512", "onednn"), ("AuthenticAMD", "AVX512_BF16", "onednn"),
    ("AuthenticAMD", "AVX2", "aten"), ("AuthenticAMD", "DEFAULT", "aten"), ("AuthenticAMD", "unknown", "aten"),
    ("GenuineIntel", "AVX512", "aten"), ("GenuineIntel", "AVX2", "aten"), ("unknown", "AVX512", "aten")])
def test_auto_uses_onednn_only_on_an_amd_cpu_with_avx512(monkeypatch, vendor, capability, expected):
    # measured: oneDNN beat MKL on two AVX-512 EPYCs (Zen 5 by 2x) and lost to it on an AVX2 one
    # (Zen 3) and on an AVX-512 Intel Xeon, where MKL is its maker's own library
    monkeypatch.setenv("AECORE_LINEAR", "auto")
    monkeypatch.setattr(kernels, "cpu_capability", lambda: capability)
    monkeypatch.setattr(kernels, "cpu_vendor", lambda: vendor)
    assert kernels.chosen() == expected
    x, w = torch.randn(8, 6), torch.randn(4, 6, requires_grad=True)
    assert kernels.onednn_applies(x, w) is (expected == "onednn")
    assert ("_Linear" in type(kernels.linear(x, w).grad_fn).__name__) is (expected == "onednn")
    monkeypatch.setenv("AECORE_LINEAR", "onednn")
    assert kernels.chosen() == "onednn"  # forced, whatever the CPU
    with kernels.use("aten"):
        assert kernels.chosen() == "aten"


def test_this_cpu_reports_a_capability():
    # "unknown" (torch could not say) would quietly mean PyTorch's kernels on every CPU
    assert kernels.cpu_capability() != "unknown"


def test_the_vendor_comes_from_cpuinfo():
    cpuinfo = Path("/proc/cpuinfo")
    lines = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("vendor_id")] if cpuinfo.exists() else []
    # where there is none (another OS, an ARM CPU), "unknown": auto then keeps PyTorch's default kernel
    assert kernels.cpu_vendor() == (lines[0].split(":", 1)[1].strip() if lines else "unknown") != ""
