"""aecore.embedding (2-D maps of codes), the vectorized k-NN accuracy, and the PCA helpers
the Compare page uses (error-vs-K curve, components recovered from a linear decoder)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aecore import embedding, metrics
from aecore.baselines import fit_pca, pca_error_curve, recovered_components
from aecore.config import ModelConfig
from aecore.embedding import embed_2d, encode_array, reconstruct_array
from aecore.metrics import component_abs_cosines, knn_accuracy, knn_correct, paired_sign_test, recon_errors
from aecore.models import build_model


@pytest.fixture(scope="module")
def digits_ds():
    from aecore.data import load

    return load("digits")


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=6.0, size=(4, 10))
    y = np.repeat(np.arange(4), 75)
    x = (centers[y] + rng.normal(size=(300, 10))).astype(np.float32)
    return x, y


def test_k2_passthrough_is_exact():
    codes = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    pts, method = embed_2d(codes)
    assert method == "code"
    np.testing.assert_array_equal(pts, codes.astype(np.float64))
    pts2, method2 = embed_2d(codes, method="code")
    assert method2 == "code" and np.array_equal(pts2, pts)


def test_k1_is_padded_with_zeros_and_says_so():
    codes = np.arange(7, dtype=np.float32)[:, None]
    pts, method = embed_2d(codes)
    assert method == "code-1d" and method in embedding.METHOD_LABELS
    np.testing.assert_array_equal(pts[:, 0], np.arange(7))
    np.testing.assert_array_equal(pts[:, 1], 0)


def test_pca_matches_sklearn_up_to_sign(blobs):
    from sklearn.decomposition import PCA

    x, _ = blobs
    pts, method = embed_2d(x)
    assert method == "pca" and pts.shape == (300, 2)
    ref = PCA(n_components=2).fit_transform(x.astype(np.float64))
    for j in range(2):
        sign = np.sign(pts[:, j] @ ref[:, j])
        np.testing.assert_allclose(sign * pts[:, j], ref[:, j], atol=1e-6)


def test_results_are_cached_by_content(blobs):
    x, _ = blobs
    embedding.clear_cache()
    a, _ = embed_2d(x, method="pca")
    a[:] = 0  # the caller's copy, not the cache's
    b, _ = embed_2d(x.copy(), method="pca")
    assert len(embedding._CACHE) == 1 and np.abs(b).sum() > 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="method='tsne'"):
        embed_2d(np.zeros((5, 3)), method="tsne")
    with pytest.raises(ValueError, match="needs K <= 2"):
        embed_2d(np.zeros((5, 3)), method="code")
    with pytest.raises(ValueError, match="NaN"):
        embed_2d(np.full((5, 3), np.nan))


def test_umap_small_run_is_finite(blobs):
    """Slow-ish (numba compiles UMAP's kernels on first use, ~10-20 s), but keep it."""
    x, y = blobs
    pts, method = embed_2d(x, method="umap", seed=0)
    assert method == "umap" and pts.shape == (300, 2) and np.all(np.isfinite(pts))
    assert embedding.umap_ready()
    assert knn_accuracy(pts, y) > 0.9  # well-separated blobs stay separated


@pytest.mark.parametrize("dim", [2, metrics.KDTREE_MAX_DIM, metrics.KDTREE_MAX_DIM + 1, 30])
def test_knn_accuracy_matches_a_loop_reference(blobs, dim):
    # both searches (a k-d tree up to KDTREE_MAX_DIM dimensions, sklearn's above) against a brute force
    x, y = blobs
    rng = np.random.default_rng(3)
    pts = np.concatenate([x, x, x], axis=1)[:, :dim] + rng.normal(scale=3.0, size=(300, dim))
    labels = rng.permutation(np.repeat(np.array([2, 5, 9]), 100))[:300]  # not 0..C-1
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)  # never a point's own neighbour
    for k in (1, 5, 8):
        idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
        ref = np.mean([np.bincount(labels[i]).argmax() == lab for i, lab in zip(idx, labels)])
        assert knn_accuracy(pts, labels, k=k) == pytest.approx(ref)
    assert knn_accuracy(x, y) == 1.0
    with pytest.raises(ValueError, match="k=0"):
        knn_accuracy(pts, labels, k=0)


def test_knn_refuses_points_that_are_not_finite():
    pts = np.random.default_rng(0).normal(size=(10, 2))
    pts[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        knn_correct(pts, np.arange(10) % 2)


def test_knn_accuracy_excludes_the_point_itself_among_duplicates():
    pts = np.zeros((4, 2))
    labels = np.array([0, 1, 1, 1])
    # every point's 3 others: for point 0 they are all label 1 (wrong), for the rest 2 of 3 are 1
    assert knn_accuracy(pts, labels, k=3) == pytest.approx(0.75)


def test_pca_error_curve_is_the_sum_of_discarded_eigenvalues(digits_ds):
    x = digits_ds.x_train
    n = len(x)
    curve = pca_error_curve(x)
    evals = fit_pca(x, x.shape[1]).all_variances_
    tail = np.concatenate([np.cumsum(evals[::-1])[::-1], [0.0]]) * (n - 1) / n
    np.testing.assert_allclose(curve, tail[: len(curve)], rtol=1e-6, atol=1e-8)
    test_curve = pca_error_curve(x, digits_ds.x_test)
    pca4 = fit_pca(x, 4)
    assert test_curve[4] == pytest.approx(recon_errors(digits_ds.x_test, pca4.reconstruct(digits_ds.x_test))["sse"], rel=1e-5)
    assert np.all(np.diff(test_curve) <= 1e-9) and test_curve[-1] == pytest.approx(0, abs=1e-6)


def test_recovered_components_undo_any_mix_of_the_pca_subspace(digits_ds):
    x = digits_ds.x_train
    comps = fit_pca(x, 5).components_  # (5, D)
    mix = np.random.default_rng(0).normal(size=(5, 5))  # an invertible, non-orthogonal mix
    decoder_W = comps.T @ mix  # (D, 5): what a linear AE may learn
    rec = recovered_components(decoder_W, x)
    assert rec.shape == comps.shape
    np.testing.assert_allclose(component_abs_cosines(rec, comps), 1.0, atol=1e-8)
    np.testing.assert_allclose(rec, comps, atol=1e-6)  # same sign convention as fit_pca
    assert recovered_components(decoder_W, x, k=2).shape == (2, x.shape[1])


def test_encode_and_reconstruct_arrays_match_the_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="sigmoid", code_size=3), 12)
    x = np.random.default_rng(0).random((10, 12), dtype=np.float32)
    codes = encode_array(model, x, batch=4)
    assert codes.shape == (10, 3) and codes.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(codes, model.encode(torch.from_numpy(x)).numpy(), rtol=1e-6)
        np.testing.assert_allclose(reconstruct_array(model, x), model.reconstruct(torch.from_numpy(x)).numpy(), rtol=1e-6)
    assert encode_array(model, x[:0]).shape == (0, 3)
    assert model.training  # mode untouched (the model may be shared)


def test_knn_correct_is_per_example_and_its_mean_the_accuracy(blobs):
    pts, labels = blobs
    right = knn_correct(pts, labels, k=5)
    assert right.dtype == bool and right.shape == labels.shape
    assert right.mean() == knn_accuracy(pts, labels, k=5)
    # a point planted inside another label's blob is misplaced, the rest of its own blob not
    moved = pts.copy()
    other = np.flatnonzero(labels != labels[0])[0]
    moved[0] = pts[other]
    assert not knn_correct(moved, labels, k=5)[0]


def test_paired_sign_test_counts_the_discordant_examples_and_gives_the_exact_p():
    a = np.array([True] * 9 + [False] * 1 + [True] * 50 + [False] * 40)
    b = np.array([False] * 9 + [True] * 1 + [True] * 50 + [False] * 40)
    only_a, only_b, p = paired_sign_test(a, b)
    assert (only_a, only_b) == (9, 1)
    assert p == pytest.approx(2 * (1 + 10) / 2 ** 10)  # P(X <= 1) + P(X >= 9), X ~ Binomial(10, 1/2)
    assert paired_sign_test(b, a) == (1, 9, pytest.approx(p))
    assert paired_sign_test(a, a) == (0, 0, 1.0)  # no example tells them apart
    with pytest.raises(ValueError, match="same examples"):
        paired_sign_test(a, b[:-1])


def test_the_latent_page_calls_a_small_gap_chance_and_a_large_one_a_difference():
    from dashboard.figures_latent import separation_verdict

    rng = np.random.default_rng(0)
    raw = rng.random(360) < 0.56
    code = raw.copy()
    flip = rng.choice(360, 40, replace=False)
    code[flip] = ~code[flip]  # 40 examples change: about as many gained as lost
    text = separation_verdict(code, raw)
    assert "**about as well as**" in text and "on 360 examples" in text
    code = raw | (rng.random(360) < 0.3)  # the code also gets ~30 % of the pixels' misses right
    text = separation_verdict(code, raw)
    gained = int((code & ~raw).sum())
    assert "**better than**" in text and f"{gained} are placed right only on the code's map, 0 only" in text
    assert "**worse than**" in separation_verdict(raw, code)


def test_the_umap_warmup_leaves_no_half_imported_pandas_for_plotly_to_find(tmp_path):
    # plotly reads sys.modules["pandas"] without importing it; the warm-up thread imports pandas
    # (through umap-learn), so in a fresh process pandas must be whole before that thread starts
    code = (
        "import sys\n"
        "from aecore import embedding\n"
        "assert 'pandas' not in sys.modules, 'pandas was already imported: the test would prove nothing'\n"
        "embedding._warm_quietly = lambda: None\n"  # the thread itself is not what is tested
        "embedding.start_umap_warmup()\n"
        "pd = sys.modules.get('pandas')\n"
        "assert pd is not None and hasattr(pd, 'Series') and hasattr(pd, 'Index'), pd\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
