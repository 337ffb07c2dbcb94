"""Reference tests for aecore.generate (samples, manifold, interpolation, traversal, KL per
dimension), aecore.units (unit statistics) and aecore.export (the run zip)."""
from __future__ import annotations

import io
import json
import runpy
import zipfile

import numpy as np
import pytest
import torch

from aecore import objectives
from aecore.config import ModelConfig, TrainConfig
from aecore.embedding import encode_array
from aecore.export import export_run_zip
from aecore.generate import (ACTIVE_KL_NATS, active_units, code_range, decode_codes, interpolate, kl_per_dim,
                             manifold_grid, rate_distortion, sample_grid, traverse)
from aecore.models import build_model
from aecore.units import unit_stats


def _model(variant: str, k: int, seed: int = 0, **kw):
    m = build_model(ModelConfig(variant=variant, code_size=k, **kw), 64, generator=torch.Generator().manual_seed(seed))
    return m.eval()


@pytest.fixture(scope="module")
def vae():
    m = _model("vae", 3, hidden=(16,))
    with torch.no_grad():  # spread the log-variances so the dimensions differ
        m.logvar.bias.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    return m


@pytest.fixture(scope="module")
def x(digits):
    return digits.x_test[:40]


@pytest.mark.parametrize("variant", ["vae", "sigmoid", "deep"])
def test_interpolation_endpoints_are_the_two_codes(variant, x):
    model = _model(variant, 3, **({"hidden": (16,)} if variant != "sigmoid" else {}))
    path = interpolate(model, x[0], x[1], steps=7)
    codes = encode_array(model, x[:2])
    np.testing.assert_array_equal(path.codes[0], codes[0])
    np.testing.assert_array_equal(path.codes[-1], codes[1])
    np.testing.assert_allclose(path.t, np.linspace(0, 1, 7))
    np.testing.assert_allclose(path.codes[3], 0.5 * codes[0] + 0.5 * codes[1], rtol=1e-5, atol=1e-6)  # t = 1/2
    np.testing.assert_allclose(path.images, decode_codes(model, path.codes))
    with pytest.raises(ValueError, match="steps=1"):
        interpolate(model, x[0], x[1], steps=1)


def test_kl_per_dimension_sums_to_the_total_kl(vae, x):
    kl = kl_per_dim(vae, x)
    assert kl.shape == (3,) and np.all(kl >= 0)
    with torch.no_grad():
        mu, logvar = vae.encode_dist(torch.tensor(x))
        total = float(objectives.gaussian_kl(mu, logvar))
        # one dimension by hand: -1/2 (1 + log σ² - μ² - σ²), mean over x
        by_hand = float((-0.5 * (1 + logvar[:, 1] - mu[:, 1] ** 2 - logvar[:, 1].exp())).mean())
    assert kl.sum() == pytest.approx(total, rel=1e-5)
    assert kl[1] == pytest.approx(by_hand, rel=1e-5)
    # batching does not change the result
    np.testing.assert_allclose(kl_per_dim(vae, x, batch=7), kl, rtol=1e-6)


def test_active_units_use_the_threshold():
    kl = np.array([0.5, 0.009, 0.011, 0.0])
    np.testing.assert_array_equal(active_units(kl), [True, False, True, False])
    assert ACTIVE_KL_NATS == 0.01
    np.testing.assert_array_equal(active_units(kl, threshold=0.1), [True, False, False, False])


def test_a_collapsed_dimension_has_zero_kl(x):
    vae = _model("vae", 2, hidden=(16,))
    with torch.no_grad():  # dimension 1 ignores x and matches the prior: μ = 0, σ = 1
        vae.mu.weight[1].zero_()
        vae.mu.bias[1] = 0.0
        vae.logvar.weight[1].zero_()
        vae.logvar.bias[1] = 0.0
    kl = kl_per_dim(vae, x)
    assert kl[1] == pytest.approx(0.0, abs=1e-7) and kl[0] > ACTIVE_KL_NATS
    np.testing.assert_array_equal(active_units(kl), [True, False])


def test_rate_and_distortion_add_up_to_the_elbo(vae, x):
    rd = rate_distortion(vae, x, seed=3)
    assert rd["rate"] == pytest.approx(kl_per_dim(vae, x).sum())
    assert rd["elbo"] == pytest.approx(-(rd["rate"] + rd["distortion"]))
    # the model's own ELBO with the same random draw of z
    elbo = float(vae.elbo(torch.tensor(x), generator=torch.Generator().manual_seed(3)))
    assert rd["elbo"] == pytest.approx(elbo, rel=1e-5)


def test_sample_grid_is_seeded_and_temperature_zero_decodes_the_prior_mean(vae):
    a = sample_grid(vae, 6, temperature=1.0, seed=4)
    assert a.shape == (6, 64) and np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, sample_grid(vae, 6, temperature=1.0, seed=4))
    assert not np.array_equal(a, sample_grid(vae, 6, temperature=1.0, seed=5))
    cold = sample_grid(vae, 3, temperature=0.0)
    np.testing.assert_allclose(cold, np.repeat(decode_codes(vae, np.zeros((1, 3))), 3, axis=0), rtol=1e-6)
    with pytest.raises(TypeError, match="needs a VAE"):
        sample_grid(_model("sigmoid", 3), 4)


def test_manifold_grid_orders_codes_like_a_plot(digits):
    vae = _model("vae", 2, hidden=(16,))
    g = manifold_grid(vae, 5)
    np.testing.assert_allclose(g.z1, np.linspace(-2, 2, 5))
    assert g.codes.shape == (25, 2) and g.images.shape == (25, 64)
    # top-left tile: smallest z1, largest z2; bottom-right: largest z1, smallest z2
    np.testing.assert_allclose(g.codes[0], [-2, 2])
    np.testing.assert_allclose(g.codes[-1], [2, -2])
    np.testing.assert_allclose(g.codes[1], [-1, 2])  # along the row z1 grows
    np.testing.assert_allclose(g.images, decode_codes(vae, g.codes))
    # a plain autoencoder has no prior: its grid spans the range of its training codes
    ae = _model("deep", 2, hidden=(16,))
    with pytest.raises(ValueError, match="no prior"):
        manifold_grid(ae, 5)
    g2 = manifold_grid(ae, 4, x=digits.x_train)
    (lo1, hi1), (lo2, hi2) = code_range(ae, digits.x_train)
    assert (g2.z1[0], g2.z1[-1], g2.z2[0], g2.z2[-1]) == pytest.approx((lo1, hi1, lo2, hi2))
    with pytest.raises(ValueError, match="K=3"):
        manifold_grid(_model("vae", 3, hidden=(16,)), 5)


def test_traverse_changes_only_one_unit(vae, x):
    codes, images = traverse(vae, x[0], 1, [-1.0, 0.0, 2.0])
    base = encode_array(vae, x[:1])[0]
    np.testing.assert_allclose(codes[:, 1], [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(codes[:, [0, 2]], np.repeat(base[None, [0, 2]], 3, axis=0))
    np.testing.assert_allclose(images, decode_codes(vae, codes))
    with pytest.raises(ValueError, match="dim=3"):
        traverse(vae, x[0], 3, [0.0])


def test_unit_stats_count_dead_relus_and_mean_activations(x):
    model = _model("relu", 6)
    with torch.no_grad():  # units 0 and 1 can never fire on inputs in [0, 1]
        model.enc_w[0][:2] = -1.0
        model.enc_b[0][:2] = -0.5
    s = unit_stats(model, x, target=0.05, bins=10)
    h = encode_array(model, x)
    assert s.activation == "relu"
    np.testing.assert_array_equal(s.dead, [True, True] + [bool(not (h[:, k] > 0).any()) for k in range(2, 6)])
    assert s.dead_fraction == pytest.approx(s.dead.mean()) and s.dead_fraction >= 2 / 6
    np.testing.assert_allclose(s.mean_activation, h.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(s.fraction_active, (h > 0).mean(axis=0))
    assert s.counts.sum() == h.size and len(s.edges) == 11
    np.testing.assert_array_equal(s.above_target, s.mean_activation > 0.05)
    assert unit_stats(_model("vae", 2, hidden=(8,)), x).activation == "linear"


def test_export_zip_holds_the_run_and_a_snippet_that_reloads_it(tmp_path, digits, capsys):
    model = _model("sigmoid", 4)
    mc, tc = model.cfg, TrainConfig(dataset="digits", epochs=1)
    info = {"name": "digits", "shape": [8, 8], "input_dim": 64, "value_range": [0.0, 1.0]}
    data = export_run_zip(mc, tc, model, {"test_sse": 1.5}, [{"step": 1, "loss": 2.0}], info, name="my run")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(zf.namelist())
        assert names == ["my-run/config.json", "my-run/history.csv", "my-run/load_run.py", "my-run/metrics.json",
                         "my-run/model.safetensors"]
        config = json.loads(zf.read("my-run/config.json"))
        assert config["model"]["variant"] == "sigmoid" and config["data"]["input_dim"] == 64
        assert json.loads(zf.read("my-run/metrics.json")) == {"test_sse": 1.5}
        zf.extractall(tmp_path)
    snippet = tmp_path / "my-run" / "load_run.py"
    assert "aecore.checkpoint import load_run" in snippet.read_text()
    runpy.run_path(str(snippet), run_name="__main__")  # reloads the weights and encodes an example
    out = capsys.readouterr().out
    expected = encode_array(model, digits.x_test[:1])[0]
    assert f"code h: {np.round(expected, 3)}" in out  # the same code as the model that was exported
