"""aecore.backprop: the written-out backward pass must give autograd's loss terms and gradients.

Compared in float64, where the two agree to rounding (a wrong derivative, a missing tied-weight
term, a sparsity gradient off by the batch size or the weight, or a different noise draw would
differ at the 1e-2 level), then through the Trainer in float32, against the same run on autograd.
"""
import numpy as np
import pytest
import torch

from aecore import kernels
from aecore.config import ModelConfig, TrainConfig
from aecore import backprop
from aecore.models import build_model
from aecore.training import fit

D = 20
CASES = {
    "linear, squared": dict(variant="linear"),
    "tied linear": dict(variant="tied"),
    "sigmoid, cross-entropy": dict(variant="sigmoid"),
    "sigmoid, tied": dict(variant="sigmoid", tied=True),
    "sigmoid, squared, sigmoid output": dict(variant="sigmoid", loss="squared"),
    "relu": dict(variant="relu"),
    "tanh code, squared": dict(variant="relu", activation="tanh", loss="squared"),
    "deep relu (linear code)": dict(variant="deep", hidden=(16, 12)),
    "deep sigmoid, tied": dict(variant="deep", activation="sigmoid", hidden=(14,), tied=True),
    "denoising, masking": dict(variant="denoising", noise="masking", noise_level=0.3),
    "denoising, gaussian": dict(variant="denoising", noise="gaussian", noise_level=0.2),
    "sparse relu": dict(variant="sparse", reg=0.3),
    "sparse sigmoid, tied, squared": dict(variant="sparse", activation="sigmoid", tied=True, loss="squared", reg=0.05),
    "VAE, Bernoulli": dict(variant="vae", hidden=(16,)),
    "VAE, beta 4, two hidden layers": dict(variant="vae", hidden=(16, 12), beta=4.0),
    "VAE, Gaussian, linear output": dict(variant="vae", hidden=(16,), loss="squared", output="linear"),
    "VAE, Gaussian, sigmoid output, tanh": dict(variant="vae", hidden=(16,), loss="squared", activation="tanh"),
    "VAE, no hidden layer": dict(variant="vae", hidden=()),
    "VAE, denoising": dict(variant="vae", hidden=(16,), noise="masking", noise_level=0.3),
}


def _model(kw, dtype=torch.float64, dim=D, k=6):
    m = build_model(ModelConfig(code_size=k, **kw), dim, generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.no_grad():  # biases away from 0, so that a dropped bias gradient shows
        for b in m.parameters():
            if b.ndim == 1:
                b.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(b.numel()))
    return m


def _autograd(m, x, seed):
    for p in m.parameters():
        p.grad = None
    w = m.loss_weights()
    terms = m.loss_terms(x, generator=torch.Generator().manual_seed(seed))
    sum(w[n] * t for n, t in terms.items()).backward()
    return {n: float(t.detach()) for n, t in terms.items()}, {n: p.grad.clone() for n, p in m.named_parameters()}


def _written_out(m, x, seed):
    for p in m.parameters():
        p.grad = torch.full_like(p, 7.0)  # replaced, not added to
    terms = backprop.loss_and_grads(m, x, generator=torch.Generator().manual_seed(seed))
    return {n: float(t) for n, t in terms.items()}, {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])  # eval: no noise, z = μ
@pytest.mark.parametrize("case", CASES)
def test_terms_and_gradients_equal_autograds_in_float64(case, training):
    m = _model(CASES[case])
    m.train(training)
    assert backprop.reason(m) is None
    x = torch.rand(9, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    terms, grads = _written_out(m, x, seed=5)
    ref_terms, ref_grads = _autograd(m, x, seed=5)
    assert terms.keys() == ref_terms.keys()
    for n in terms:
        assert terms[n] == pytest.approx(ref_terms[n], rel=1e-12), n
    assert grads.keys() == ref_grads.keys()
    for n, g in grads.items():
        scale = float(ref_grads[n].abs().max())
        assert scale > 0, f"{n}: autograd's gradient is 0, the comparison would prove nothing"
        assert float((g - ref_grads[n]).abs().max()) <= 1e-12 * scale, n


def test_given_weights_replace_the_models_own():
    m = _model(CASES["sparse relu"])  # reg = 0.3
    x = torch.rand(9, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    backprop.loss_and_grads(m, x, weights={"recon": 2.0, "sparsity": 0.0})
    ours = {n: p.grad.clone() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = None
    (2.0 * m.loss_terms(x)["recon"]).backward()  # the L1 term weighted 0, the reconstruction 2
    for n, p in m.named_parameters():
        assert float((ours[n] - p.grad).abs().max()) <= 1e-12 * float(p.grad.abs().max()), n
    _, with_l1 = _written_out(m, x, seed=0)
    assert float((with_l1["enc_w.0"] - ours["enc_w.0"] / 2).abs().max()) > 1e-3  # and reg = 0.3 shows


@pytest.mark.parametrize("backend", ["aten", "onednn"])
def test_float32_gradients_match_autograd_on_either_matrix_kernel(backend, monkeypatch):
    if backend == "onednn" and not kernels.available("cpu"):
        pytest.skip("this torch build has no oneDNN linear")
    monkeypatch.setattr(kernels, "MIN_MACS", 0)
    m = _model(dict(variant="sigmoid"), dtype=torch.float32, dim=200, k=150)  # wide enough for oneDNN's gᵀx
    x = torch.rand(64, 200, generator=torch.Generator().manual_seed(2))
    with kernels.use(backend):
        assert kernels.onednn_applies(x, m.enc_w[0]) == (backend == "onednn")
        _, grads = _written_out(m, x, seed=0)
        _, ref = _autograd(m, x, seed=0)
    for n, g in grads.items():
        assert float((g - ref[n]).abs().max()) <= 1e-5 * float(ref[n].abs().max()), n


@pytest.mark.parametrize("kw, precision, device, says", [
    (dict(variant="contractive"), "float32", "cpu", "contractive penalty"),
    (dict(variant="sigmoid"), "bfloat16", "cpu", "precision 'bfloat16'"),
    (dict(variant="sigmoid"), "float32", "meta", "this run is on meta"),
])
def test_what_is_not_written_out_says_why(kw, precision, device, says):
    m = build_model(ModelConfig(code_size=4, **kw), D)
    assert says in backprop.reason(m, precision, device)


def test_a_frozen_parameter_an_unknown_activation_and_the_setting_send_the_step_to_autograd(monkeypatch):
    m = _model(CASES["sigmoid, cross-entropy"])
    m.enc_b[0].requires_grad_(False)
    assert backprop.reason(m) == "some parameters are frozen"
    m.enc_b[0].requires_grad_(True)
    m.activation = "elu"  # (no config makes one yet: an activation added later is not taken unseen)
    assert "activation 'elu'" in backprop.reason(m)
    m.activation = "sigmoid"
    assert backprop.reason(m) is None
    monkeypatch.setenv("AECORE_BACKWARD", "autograd")
    assert "AECORE_BACKWARD=autograd" in backprop.reason(m)
    monkeypatch.setenv("AECORE_BACKWARD", "by hand")
    with pytest.raises(ValueError, match="AECORE_BACKWARD='by hand' must be one of analytic, autograd"):
        backprop.reason(m)


@pytest.mark.parametrize("kw", [dict(variant="denoising", code_size=16),
                                dict(variant="sparse", code_size=24, reg=0.01),
                                dict(variant="deep", code_size=8, hidden=(32,), tied=True),
                                dict(variant="vae", code_size=4, hidden=(32,), beta=2.0)])
def test_the_trainer_trains_the_same_weights_either_way(kw, digits, monkeypatch):
    mc = ModelConfig(**kw)
    tc = TrainConfig(epochs=2, n_train=400, batch_size=50, seed=4, device="cpu",
                     progress_every=1e9, snapshot_every=1e9)
    runs = {}
    for mode in ("analytic", "autograd"):
        monkeypatch.setenv("AECORE_BACKWARD", mode)
        runs[mode] = fit(mc, tc, digits)
        assert runs[mode].metrics["backward"] == mode
    a, b = (runs[m].model.state_dict() for m in ("analytic", "autograd"))
    for n in a:  # float32 rounding differs between the two; 16 steps of Adam keep it at this level
        assert torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-5), n
    assert runs["analytic"].metrics["train_loss"] == pytest.approx(runs["autograd"].metrics["train_loss"], rel=1e-4)
    assert np.isfinite(runs["analytic"].metrics["test_sse"])


def test_the_trainer_keeps_autograd_where_the_step_is_not_written_out(digits):
    tc = TrainConfig(epochs=1, n_train=100, batch_size=50, device="cpu", progress_every=1e9, snapshot_every=1e9)
    res = fit(ModelConfig(variant="contractive", code_size=8), tc, digits)
    assert res.metrics["backward"] == "autograd"
    res = fit(ModelConfig(variant="vae", code_size=4, hidden=(16,)), tc.replace(precision="bfloat16"), digits)
    assert res.metrics["backward"] == "autograd"
