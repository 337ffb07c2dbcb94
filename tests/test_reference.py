"""Reference tests: every formula is compared with an independent computation (micrograd style)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from aecore import corruption, objectives
from aecore.baselines import fit_pca, pca_error_curve, recovered_components
from aecore.config import ModelConfig, TrainConfig
from aecore.metrics import (component_abs_cosines, knn_accuracy, linear_probe_accuracy, principal_angles_deg, psnr,
                            recon_errors)
from aecore.models import build_model
from aecore.training import fit

D = 64


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize(model, seed=0, scale=0.3):
    """Non-zero biases too, so a formula that forgets a bias is caught."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# --- contractive penalty = ||J||_F^2 --------------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "linear"])
def test_contractive_penalty_is_squared_frobenius_norm_of_the_jacobian(activation):
    cfg = ModelConfig(variant="contractive", activation=activation, code_size=7, reg=0.1,
                      output="sigmoid", loss="cross-entropy")
    model = _randomize(build_model(cfg, D, generator=torch.Generator().manual_seed(0)).double())
    model.eval()  # no corruption
    x = torch.rand(6, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    per_example = []
    for i in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(lambda xi: model.encode(xi[None])[0], x[i])  # (K, D)
        assert J.shape == (7, D)
        ref = float(J.square().sum())
        with torch.no_grad():
            got = float(objectives.contractive_penalty(model.W, out.pre[i:i + 1], out.code[i:i + 1], activation))
        assert got == pytest.approx(ref, rel=1e-10, abs=1e-12)
        per_example.append(ref)
    assert max(per_example) > 0
    # the model's loss term is the batch mean of the same quantity
    with torch.no_grad():
        term = model.loss_terms(x)["contractive"]
    assert float(term) == pytest.approx(np.mean(per_example), rel=1e-10)


def test_contractive_penalty_of_a_linear_encoder_is_the_weight_norm():
    w = _rand(4, 9)
    pre = _rand(3, 4, seed=1)
    assert float(objectives.contractive_penalty(w, pre, pre, "linear")) == pytest.approx(float(w.square().sum()))


# --- Gaussian KL ------------------------------------------------------------------------------------
def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = _rand(5, 3), _rand(5, 3, seed=1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert float(objectives.gaussian_kl(mu, logvar)) == pytest.approx(float(ref), rel=1e-12)


def test_gaussian_kl_is_zero_at_the_prior():
    assert float(objectives.gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4))) == 0.0


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    mu = torch.tensor([[0.5, -1.0, 0.2]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.3, -1.2]], dtype=torch.float64)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(0.0, 1.0)
    torch.manual_seed(0)
    z = q.sample((200_000,))  # (N, 1, K)
    samples = (q.log_prob(z) - p.log_prob(z)).sum(dim=-1).flatten()  # log q(z) - log p(z), per draw
    estimate, se = float(samples.mean()), float(samples.std() / math.sqrt(samples.numel()))
    kl = float(objectives.gaussian_kl(mu, logvar))
    assert abs(kl - estimate) < 5 * se, (kl, estimate, se)


# --- tied weights --------------------------------------------------------------------------------------
def test_tied_decoder_weight_is_the_encoder_weight_transposed():
    cfg = ModelConfig(variant="tied", code_size=5)
    model = build_model(cfg, D, generator=torch.Generator().manual_seed(0))
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("dec_w") for n in names), names
    assert sum(p.numel() for p in model.parameters()) == 5 * D + 5 + D  # W, b, c: no second matrix
    assert torch.equal(model.decoder_weight, model.W.t())
    # and it stays tied through training: one optimizer step changes both together
    x = torch.rand(8, D, generator=torch.Generator().manual_seed(1))
    before = model.W.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss_terms(x)["recon"].backward()
    opt.step()
    assert not torch.equal(before, model.W)
    assert torch.equal(model.decoder_weight, model.W.t())
    # forward is x̂ = Wᵀ(Wx + b) + c
    _randomize(model)
    enc_b, dec_b = model.enc_b[0], model.dec_b[0]
    with torch.no_grad():
        ref = F.linear(F.linear(x, model.W, enc_b), model.W.t(), dec_b)
        assert torch.allclose(model(x).recon, ref, atol=1e-6)


def test_tied_gradient_flows_through_both_uses_of_w():
    model = _randomize(build_model(ModelConfig(variant="tied", code_size=5), D).double())
    x = torch.rand(8, D, dtype=torch.float64)
    model.loss_terms(x)["recon"].backward()
    W = model.W.detach().clone().requires_grad_()
    b, c = model.enc_b[0].detach(), model.dec_b[0].detach()
    ref = (F.linear(F.linear(x, W, b), W.t(), c) - x).square().sum(dim=1).mean()
    ref.backward()
    assert torch.allclose(model.W.grad, W.grad, rtol=1e-10, atol=1e-12)


def test_untied_sigmoid_forward_matches_the_formula():
    model = _randomize(build_model(ModelConfig(variant="sigmoid", code_size=6), D).double())
    x = torch.rand(4, D, dtype=torch.float64)
    (W,), (b,), (Wd,), (c,) = model.enc_w, model.enc_b, model.dec_w, model.dec_b
    assert W.shape == (6, D) and Wd.shape == (D, 6)
    h = torch.sigmoid(x @ W.T + b)
    ref = torch.sigmoid(h @ Wd.T + c)
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(out.code, h) and torch.allclose(out.recon, ref)


def test_deep_forward_has_a_linear_code_layer_and_a_mirrored_decoder():
    cfg = ModelConfig(variant="deep", code_size=3, hidden=(10,))  # relu hidden layers, sigmoid output
    model = _randomize(build_model(cfg, D).double())
    assert [tuple(w.shape) for w in model.enc_w] == [(10, D), (3, 10)]
    assert [tuple(w.shape) for w in model.dec_w] == [(10, 3), (D, 10)]
    x = torch.rand(4, D, dtype=torch.float64)
    (W1, W2), (b1, b2) = model.enc_w, model.enc_b
    (V1, V2), (c1, c2) = model.dec_w, model.dec_b
    code = F.relu(x @ W1.T + b1) @ W2.T + b2  # no activation on the code
    ref = torch.sigmoid(F.relu(code @ V1.T + c1) @ V2.T + c2)
    with torch.no_grad():
        out = model(x)
    assert torch.allclose(out.code, code) and torch.allclose(out.recon, ref)
    assert out.code.min() < 0  # a linear code can be negative


def test_denoising_corrupts_the_input_but_reconstructs_the_clean_target():
    cfg = ModelConfig(variant="denoising", code_size=6, noise="masking", noise_level=1.0)  # every input zeroed
    model = _randomize(build_model(cfg, D).double())
    x = torch.rand(5, D, dtype=torch.float64)
    with torch.no_grad():
        model.train()
        noisy = model.loss_terms(x, generator=torch.Generator().manual_seed(0))["recon"]
        assert float(noisy) == pytest.approx(float(objectives.cross_entropy(model(torch.zeros_like(x)).logits, x)))
        model.eval()  # no corruption at evaluation
        clean = model.loss_terms(x)["recon"]
        assert float(clean) == pytest.approx(float(objectives.cross_entropy(model(x).logits, x)))
    assert float(noisy) != pytest.approx(float(clean))


def test_vae_reparameterization_draws_from_q():
    model = build_model(ModelConfig(variant="vae", code_size=3, hidden=(8,)), D).double()
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64).expand(100_000, 3)
    logvar = torch.tensor([[0.0, -2.0, 1.0]], dtype=torch.float64).expand(100_000, 3)
    z = model.sample_code(mu, logvar, torch.Generator().manual_seed(0))
    std = torch.exp(0.5 * logvar[0])
    se = std / math.sqrt(z.shape[0])
    assert torch.all((z.mean(0) - mu[0]).abs() < 5 * se)
    assert torch.all((z.std(0) - std).abs() < 5 * std / math.sqrt(2 * z.shape[0]))
    # evaluation uses the mean: deterministic; training samples
    x = torch.rand(4, D, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        assert torch.equal(a.recon, b.recon) and torch.equal(a.code, a.mu)
        assert torch.equal(a.recon, model.decode(a.mu))
        model.train()
        assert not torch.equal(model(x).recon, a.recon)
        assert model.sample(7, generator=torch.Generator().manual_seed(1)).shape == (7, D)


# --- masked losses ----------------------------------------------------------------------------------------
def _masked_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    recon = torch.randn(5, 12, generator=g, dtype=torch.float64).requires_grad_()
    x = torch.rand(5, 12, generator=g, dtype=torch.float64)
    mask = (torch.rand(5, 12, generator=g) > 0.4).double()
    mask[0] = 0  # one example fully hidden
    return recon, x, mask


@pytest.mark.parametrize("loss", ["squared", "cross-entropy"])
def test_masked_loss_ignores_unobserved_entries(loss):
    recon, x, mask = _masked_case()
    hidden = mask == 0
    x_garbage = x.clone()
    x_garbage[hidden] = 0.987654  # whatever sits under the mask must not matter
    fn = objectives.squared_error if loss == "squared" else objectives.cross_entropy
    val = fn(recon, x_garbage, mask)
    val.backward()
    assert torch.all(recon.grad[hidden] == 0)
    assert torch.all(recon.grad[~hidden] != 0)
    # the loss over observed entries only, one example at a time
    per_example = []
    for i in range(x.shape[0]):
        obs = ~hidden[i]
        r, t = recon[i, obs].detach(), x[i, obs]
        if loss == "squared":
            per_example.append(float((r - t).square().sum()))
        else:
            per_example.append(float(F.binary_cross_entropy(torch.sigmoid(r), t, reduction="sum")))
    assert val.item() == pytest.approx(np.mean(per_example), rel=1e-10)
    assert fn(recon, x, mask).item() == val.item()


def test_masked_loss_tolerates_nan_in_unobserved_entries():
    recon, x, mask = _masked_case()
    x[mask == 0] = float("nan")
    val = objectives.squared_error(recon, x, mask)
    val.backward()
    assert torch.isfinite(val)
    assert torch.all(recon.grad[mask == 0] == 0)


# --- the other loss terms ---------------------------------------------------------------------------------------
def test_l1_sparsity_value():
    h = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -3.0]])
    assert float(objectives.l1_sparsity(h)) == pytest.approx((3.0 + 4.0) / 2)


def test_sparse_model_term_is_l1_of_its_code():
    model = _randomize(build_model(ModelConfig(variant="sparse", code_size=9, reg=0.3), D))
    model.eval()
    x = torch.rand(7, D)
    with torch.no_grad():
        terms, code = model.loss_terms(x), model(x).code
    assert float(terms["sparsity"]) == pytest.approx(float(code.abs().sum() / 7), rel=1e-6)
    assert model.loss_weights() == {"recon": 1.0, "sparsity": 0.3}


def test_cross_entropy_equals_bce_on_sigmoid_summed_per_example():
    logits = 3 * _rand(6, 10)
    x = torch.rand(6, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum(dim=1).mean()
    assert float(objectives.cross_entropy(logits, x)) == pytest.approx(float(ref), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cross_entropy_value_and_gradients_match_bce_with_logits_at_extreme_logits(dtype):
    """The fused path (no mask): softplus(l) - x l summed, / B; gradients (σ(l) - x) / B and -l / B."""
    g = torch.Generator().manual_seed(3)
    l0 = torch.cat([30 * torch.randn(64, 50, generator=g, dtype=torch.float64),
                    torch.tensor([[-100.0, -30.0, -1e-3, 0.0, 1e-3, 30.0, 100.0] + [0.5] * 43], dtype=torch.float64)])
    x0 = torch.rand(65, 50, generator=g, dtype=torch.float64)
    x0[:, :5] = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    ref_l, ref_x = l0.clone().requires_grad_(), x0.clone().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(ref_l, ref_x, reduction="none").sum(dim=1).mean()
    ref.backward()
    ours_l, ours_x = l0.to(dtype).requires_grad_(), x0.to(dtype).requires_grad_()
    ours = objectives.cross_entropy(ours_l, ours_x)
    ours.backward()
    rel, atol = (1e-12, 1e-15) if dtype == torch.float64 else (1e-6, 1e-8)  # gradients are up to 1/65
    assert ours.item() == pytest.approx(ref.item(), rel=rel)
    torch.testing.assert_close(ours_l.grad.double(), ref_l.grad, rtol=rel, atol=atol)
    torch.testing.assert_close(ours_x.grad.double(), -l0 / 65, rtol=rel, atol=atol)
    torch.testing.assert_close(ours_x.grad.double(), ref_x.grad, rtol=rel, atol=atol)
    # a mask takes the general path; all-ones must give the same value
    masked = objectives.cross_entropy(l0.to(dtype), x0.to(dtype), torch.ones(65, 50, dtype=dtype))
    assert masked.item() == pytest.approx(ref.item(), rel=rel)


def test_squared_error_is_per_example_sse_averaged_over_the_batch():
    recon, x = _rand(8, 5), _rand(8, 5, seed=1)
    val = float(objectives.squared_error(recon, x))
    assert val == pytest.approx(float(F.mse_loss(recon, x, reduction="sum")) / 8, rel=1e-12)
    assert val == pytest.approx(recon_errors(x.numpy(), recon.numpy())["sse"], rel=1e-12)  # same unit as the metric
    assert val == pytest.approx(5 * float(F.mse_loss(recon, x)), rel=1e-12)


def test_gaussian_nll_is_the_unit_variance_normal_log_likelihood():
    recon, x = _rand(4, 6), _rand(4, 6, seed=1)
    ref = -torch.distributions.Normal(recon, 1.0).log_prob(x).sum(dim=1).mean()
    assert float(objectives.gaussian_nll(recon, x)) == pytest.approx(float(ref), rel=1e-12)


# --- linear autoencoder = PCA ----------------------------------------------------------------------------------------
def test_tied_linear_autoencoder_learns_the_pca_subspace(digits):
    k = 8
    res = fit(ModelConfig(variant="tied", code_size=k),
              TrainConfig(epochs=200, lr=1e-2, batch_size=64, lr_schedule="cosine", device="cpu",
                          progress_every=1e9, snapshot_every=1e9), digits)
    x = np.asarray(digits.x_train, np.float64)
    ref = PCA(n_components=k).fit(x)
    dec = res.model.decoder_weight.detach().numpy().astype(np.float64)  # (D, K)
    angles = np.degrees(subspace_angles(dec, ref.components_.T))
    assert angles.max() < 5, angles
    assert res.metrics["max_principal_angle_deg"] == pytest.approx(angles.max(), abs=1e-3)
    pca_test = recon_errors(digits.x_test, ref.inverse_transform(ref.transform(digits.x_test)))["sse"]
    assert res.metrics["pca_sse"] == pytest.approx(pca_test, rel=1e-4)
    assert res.metrics["test_sse"] <= 1.02 * pca_test
    # the trained model is linear: its reconstructions lie in its decoder's column space
    assert res.model.is_linear


def test_fit_pca_matches_sklearn(digits):
    x = digits.x_train
    k = 10
    ours = fit_pca(x, k)
    ref = PCA(n_components=k).fit(np.asarray(x, np.float64))
    assert ours.components_.shape == (k, D) and ours.n_components_ == k
    np.testing.assert_allclose(ours.mean_, ref.mean_, atol=1e-12)
    angles = np.degrees(subspace_angles(ours.components_.T, ref.components_.T))
    assert angles.max() < 1e-4
    # component by component, up to sign (the eigenvalues are distinct)
    np.testing.assert_allclose(np.abs(np.sum(ours.components_ * ref.components_, axis=1)), 1, atol=1e-8)
    np.testing.assert_allclose(ours.components_ @ ours.components_.T, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-8)
    assert ours.all_variances_.sum() == pytest.approx(np.var(np.asarray(x, np.float64), axis=0, ddof=1).sum())
    e_ours = recon_errors(digits.x_test, ours.reconstruct(digits.x_test))
    e_ref = recon_errors(digits.x_test, ref.inverse_transform(ref.transform(np.asarray(digits.x_test, np.float64))))
    assert e_ours["sse"] == pytest.approx(e_ref["sse"], rel=1e-5)
    np.testing.assert_allclose(np.abs(ours.transform(digits.x_test[:5])),
                               np.abs(ref.transform(np.asarray(digits.x_test[:5], np.float64))), atol=1e-4)


def test_fit_pca_keeps_every_component_when_overcomplete(digits):
    full = fit_pca(digits.x_train, 100)
    assert full.n_components_ == D
    err = recon_errors(digits.x_test, full.reconstruct(digits.x_test))
    assert err["mse"] < 1e-10
    with pytest.raises(ValueError, match="k=0 must be >= 1"):
        fit_pca(digits.x_train, 0)


def test_fit_pca_does_not_confuse_two_arrays(digits):
    a = np.array(digits.x_train)
    b = np.array(digits.x_train[::-1] * 0.5)
    ea, eb = fit_pca(a, 3).explained_variance_, fit_pca(b, 3).explained_variance_
    np.testing.assert_allclose(eb, 0.25 * ea, rtol=1e-8)


def test_fit_pca_in_chunks_equals_the_whole_array_at_once(digits, monkeypatch):
    """PCA reads the data a chunk of rows at a time (float64 copies of a few MB, not of the whole
    set): chunk boundaries must not change the mean, the covariance or the error curve, and a
    float64 input is the caller's and stays untouched."""
    from aecore import baselines

    x64 = np.array(digits.x_train, dtype=np.float64)[:1000]
    before = x64.copy()
    mean = x64.mean(axis=0)
    cov = (x64 - mean).T @ (x64 - mean) / (len(x64) - 1)
    direct = np.linalg.eigvalsh(cov)[::-1]
    direct_curve = np.square(digits.x_test - mean).sum(axis=1).mean()
    for rows in (97, 1000, 4096):  # ragged last chunk, exactly one chunk, one short chunk
        monkeypatch.setattr(baselines, "CHUNK_ROWS", rows)
        baselines._CACHE.clear()
        basis = fit_pca(x64, D)
        np.testing.assert_array_equal(x64, before)
        np.testing.assert_allclose(basis.mean_, mean, atol=1e-13)
        np.testing.assert_allclose(basis.all_variances_, np.clip(direct, 0, None), rtol=1e-9, atol=1e-12)
        # the components diagonalise the covariance: V C Vᵀ = diag(eigenvalues)
        np.testing.assert_allclose(basis.components_ @ cov @ basis.components_.T, np.diag(basis.explained_variance_),
                                   atol=1e-10)
        curve = pca_error_curve(x64, digits.x_test)
        assert curve[0] == pytest.approx(direct_curve, rel=1e-12)
        assert curve[10] == pytest.approx(recon_errors(digits.x_test, fit_pca(x64, 10).reconstruct(digits.x_test))["sse"],
                                          rel=1e-5)
        np.testing.assert_array_equal(x64, before)
        # transform and inverse_transform go a chunk at a time too: the same as one pass
        z = basis.truncate(10).transform(digits.x_test)
        np.testing.assert_allclose(z, (digits.x_test - mean) @ basis.components_[:10].T, atol=1e-5)
        np.testing.assert_allclose(basis.truncate(10).inverse_transform(z), z @ basis.components_[:10] + mean, atol=1e-5)
        np.testing.assert_allclose(basis.truncate(10).transform(digits.x_test[3]), z[3], atol=1e-6)  # one row
    baselines._CACHE.clear()


def test_pca_error_curve_is_the_reconstruction_error_at_every_k(digits):
    x_tr, x_te = digits.x_train, digits.x_test
    n = x_tr.shape[0]
    test_curve, train_curve = pca_error_curve(x_tr, x_te), pca_error_curve(x_tr)
    assert test_curve.shape == train_curve.shape == (D + 1,)
    assert np.all(np.diff(train_curve) <= 1e-12)  # more components never hurt on the training set
    mean_only = recon_errors(x_te, np.broadcast_to(x_tr.mean(axis=0), x_te.shape))["sse"]
    assert test_curve[0] == pytest.approx(mean_only, rel=1e-6)
    variances = fit_pca(x_tr, D).all_variances_
    for k in (1, 5, 20, D):
        basis = fit_pca(x_tr, k)
        assert test_curve[k] == pytest.approx(recon_errors(x_te, basis.reconstruct(x_te))["sse"], rel=1e-4, abs=1e-9)
        assert train_curve[k] == pytest.approx((n - 1) / n * variances[k:].sum(), rel=1e-8, abs=1e-9)
        # and it is what the training images' reconstructions really lose (the curve comes from the
        # eigenvalues, not from projecting the rows)
        assert train_curve[k] == pytest.approx(recon_errors(x_tr, basis.reconstruct(x_tr))["sse"], rel=1e-4, abs=1e-9)
    assert train_curve[D] == pytest.approx(0.0, abs=1e-9)


def test_recovered_components_undo_any_mix_of_the_pca_basis(digits):
    x = digits.x_train
    k = 6
    V = fit_pca(x, k).components_  # (K, D)
    A = np.random.default_rng(0).normal(size=(k, k)) + 3 * np.eye(k)  # an invertible mix
    W = V.T @ A  # (D, K): a decoder that spans PCA's subspace with mixed-up columns
    assert component_abs_cosines(W.T, V).min() < 0.99  # the columns themselves do not match
    rec = recovered_components(W, x)
    np.testing.assert_allclose(rec, V, atol=1e-8)  # same order, same sign convention
    np.testing.assert_allclose(recovered_components(W, x, k=2), V[:2], atol=1e-8)
    with pytest.raises(ValueError, match=r"x_train must be \(N, D=64\)"):
        recovered_components(W, x[:, :10])


def test_component_abs_cosines():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[-2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(component_abs_cosines(a, b), [1.0, 1 / np.sqrt(2), 0.0])
    with pytest.raises(ValueError, match="shapes differ"):
        component_abs_cosines(a, b[:2])


def test_knn_accuracy_matches_a_brute_force_vote():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(60, 2))
    labels = rng.integers(0, 3, size=60)
    labels[points[:, 0] > 0.5] = 2  # some structure
    k = 4
    dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    correct = 0
    for i in range(60):
        neigh = np.argsort(dist[i], kind="stable")[:k]
        correct += np.bincount(labels[neigh], minlength=3).argmax() == labels[i]  # ties: smallest label
    assert knn_accuracy(points, labels, k=k) == pytest.approx(correct / 60)
    two_blobs = np.r_[np.zeros((5, 2)), np.ones((5, 2)) * 10] + rng.normal(scale=0.01, size=(10, 2))
    assert knn_accuracy(two_blobs, np.r_[[0] * 5, [1] * 5], k=3) == 1.0
    with pytest.raises(ValueError, match="k=0 must be an integer >= 1"):
        knn_accuracy(points, labels, k=0)


def test_linear_probe_on_separable_codes_is_perfect():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    z = rng.normal(size=(200, 3)) + 5 * y[:, None]
    assert linear_probe_accuracy(z[:100], y[:100], z[100:], y[100:]) == 1.0
    assert linear_probe_accuracy(z[:100], y[:100], z[100:], y[100:], n_labels=20) == 1.0


# --- metrics ---------------------------------------------------------------------------------------------------------------
def test_recon_errors_mse_and_sse():
    x = np.zeros((2, 4))
    x_hat = np.array([[0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]])
    err = recon_errors(x, x_hat)
    assert err["mse"] == pytest.approx((4 * 0.25 + 1.0) / 8)
    assert err["sse"] == pytest.approx((1.0 + 1.0) / 2)
    rng = np.random.default_rng(0)
    a, b = rng.random((10, 7)), rng.random((10, 7))
    e = recon_errors(a, b)
    assert e["sse"] == pytest.approx(e["mse"] * 7)
    with pytest.raises(ValueError, match=r"shapes differ"):
        recon_errors(a, b[:, :6])
    with pytest.raises(ValueError, match=r"x \(0, 7\) must be a non-empty \(examples, features\) array"):
        recon_errors(a[:0], b[:0])


def test_recon_errors_sum_in_float64_chunk_by_chunk(monkeypatch):
    """The chunked float64 sums equal one float64 pass over the whole array, whatever the chunk."""
    from aecore import metrics

    rng = np.random.default_rng(1)
    a, b = rng.random((1001, 13), dtype=np.float32), rng.random((1001, 13), dtype=np.float32)
    sq = np.square(a.astype(np.float64) - b.astype(np.float64))
    for rows in (1, 100, 1001, 4096):
        monkeypatch.setattr(metrics, "CHUNK_ROWS", rows)
        e = recon_errors(a, b)
        assert e["mse"] == pytest.approx(sq.mean(), rel=1e-12)
        assert e["sse"] == pytest.approx(sq.sum(axis=1).mean(), rel=1e-12)


def test_psnr_known_cases():
    x = np.zeros((3, 5))
    assert psnr(x, x + 0.1) == pytest.approx(20.0)  # 10 log10(1 / 0.01)
    assert psnr(x, x + 25.5, data_range=255) == pytest.approx(20.0)
    assert psnr(x, x) == float("inf")


def test_principal_angles_of_known_subspaces():
    e = np.eye(3)
    assert principal_angles_deg(e[:, :1], (e[:, :1] + e[:, 1:2]) / np.sqrt(2)) == pytest.approx([45.0])
    assert principal_angles_deg(e[:, :2], e[:, [0, 2]]) == pytest.approx([90.0, 0.0], abs=1e-6)  # descending
    # a subspace, not a basis: scaling and mixing the columns changes nothing
    a = np.array([[1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    assert principal_angles_deg(a * 7, e[:, :2]) == pytest.approx([0.0, 0.0], abs=1e-6)


# --- corruption -----------------------------------------------------------------------------------------------------------------
def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_masking_zeros_about_the_level_fraction():
    x = torch.rand(200, 500, generator=_gen(0)) + 0.1  # no zeros to begin with
    level, n = 0.3, x.numel()
    out = corruption.masking(x, level, _gen(1))
    zeroed = out == 0
    assert abs(float(zeroed.float().mean()) - level) < 5 * math.sqrt(level * (1 - level) / n)
    assert torch.equal(out[~zeroed], x[~zeroed])  # the rest untouched
    assert not torch.equal(out, x)


def test_gaussian_noise_has_the_level_as_std():
    x = torch.rand(200, 500, generator=_gen(0))
    level, n = 0.2, x.numel()
    noise = (corruption.gaussian(x, level, _gen(1)) - x).double()
    assert abs(float(noise.mean())) < 5 * level / math.sqrt(n)
    assert abs(float(noise.std()) - level) < 5 * level / math.sqrt(2 * n)


def test_salt_and_pepper_sets_hits_to_zero_or_one():
    x = torch.full((200, 500), 0.5)
    level, n = 0.2, x.numel()
    out = corruption.salt_pepper(x, level, _gen(1))
    hit = out != 0.5
    assert set(out[hit].unique().tolist()) == {0.0, 1.0}
    assert abs(float(hit.float().mean()) - level) < 5 * math.sqrt(level * (1 - level) / n)
    salt = float((out[hit] == 1).float().mean())
    assert abs(salt - 0.5) < 5 * math.sqrt(0.25 / int(hit.sum()))


@pytest.mark.parametrize("kind, level", [("gaussian", 0.3), ("masking", 0.3), ("salt-pepper", 0.3)])
def test_corruption_is_reproducible_and_pure(kind, level):
    x = torch.rand(20, 30, generator=_gen(0))
    x0 = x.clone()
    a = corruption.corrupt(x, kind, level, _gen(7))
    b = corruption.corrupt(x, kind, level, _gen(7))
    c = corruption.corrupt(x, kind, level, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, x0)  # the clean batch is not changed in place


def test_corrupt_with_no_noise_is_the_identity_and_unknown_kind_raises():
    x = torch.rand(3, 4)
    assert corruption.corrupt(x, "none", 0.5) is x
    assert corruption.corrupt(x, "masking", 0.0) is x
    with pytest.raises(ValueError, match=r"noise='blur' is not known; choose one of none, gaussian"):
        corruption.corrupt(x, "blur", 0.5)


def test_block_and_random_pixel_masks():
    m = corruption.block_mask((8, 8), 2, 3, 4, 2)
    assert m.shape == (8, 8) and float(m.sum()) == 64 - 8
    assert torch.all(m[2:6, 3:5] == 0)
    with pytest.raises(ValueError, match=r"does not fit an image of 8x8"):
        corruption.block_mask((8, 8), 9, 0, 1, 1)
    r = corruption.random_pixel_mask((100, 100), 0.25, _gen(0))
    assert abs(float((r == 0).float().mean()) - 0.25) < 5 * math.sqrt(0.25 * 0.75 / 10_000)
    with pytest.raises(ValueError, match=r"fraction=1.5 must be in \[0, 1\]"):
        corruption.random_pixel_mask((3, 3), 1.5)
