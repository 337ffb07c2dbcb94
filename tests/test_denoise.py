"""Reference tests for aecore.inpainting: PSNR, corruption, masks, inpainting, the PSNR curve."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aecore import corruption
from aecore.baselines import fit_pca
from aecore.config import ModelConfig
from aecore.embedding import reconstruct_array
from aecore.inpainting import (HIDE_FRACTION, apply_mask, block, box_mask, corrupt_batch, inpaint, mask_from_paint,
                               psnr_curve, psnr_rows, random_mask, rasterize_drawing, reconstructor)
from aecore.metrics import psnr
from aecore.models import build_model


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((12, 64)).astype(np.float32)


# --- PSNR ------------------------------------------------------------------------------------
def test_psnr_matches_its_definition():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)  # MSE = 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, b, data_range=2.0) == pytest.approx(20.0 + 20 * np.log10(2.0))
    assert psnr(a, a) == float("inf")
    rows = psnr_rows(np.zeros((2, 4)), np.array([[0.1] * 4, [0.01] * 4]))
    np.testing.assert_allclose(rows, [20.0, 40.0])


# --- corruption --------------------------------------------------------------------------------
def test_corrupt_batch_is_seeded_and_matches_the_training_corruptions(x):
    a = corrupt_batch(x, "gaussian", 0.3, seed=5)
    np.testing.assert_array_equal(a, corrupt_batch(x, "gaussian", 0.3, seed=5))
    assert not np.array_equal(a, corrupt_batch(x, "gaussian", 0.3, seed=6))
    # the same noise the trainer adds (aecore.corruption) from the same seed
    ref = corruption.gaussian(torch.as_tensor(x), 0.3, torch.Generator().manual_seed(5)).numpy()
    np.testing.assert_allclose(a, ref)
    assert np.std(a - x) == pytest.approx(0.3, rel=0.1)
    m = corrupt_batch(x, "masking", 0.5, seed=1)
    zeroed = (m == 0) & (x != 0)
    assert 0.35 < zeroed.mean() < 0.65 and np.all((m == 0) | (m == x))
    sp = corrupt_batch(x, "salt-pepper", 0.4, seed=2, value_range=(0.0, 1.0))
    changed = sp != x
    assert np.all(np.isin(sp[changed], [0.0, 1.0])) and 0.25 < changed.mean() < 0.55
    np.testing.assert_array_equal(corrupt_batch(x, "gaussian", 0.0), x)
    with pytest.raises(ValueError, match="noise='blur' is not known"):
        corrupt_batch(x, "blur", 0.1)
    with pytest.raises(ValueError, match="must be >= 0 .*<= 1 for masking"):
        corrupt_batch(x, "masking", 1.5)


# --- masks -----------------------------------------------------------------------------------------
def test_block_and_box_masks_hide_exactly_the_pixels_inside():
    m = block((8, 8), top=2, left=1, height=3, width=4)
    assert m.shape == (8, 8) and m.sum() == 64 - 12
    assert np.all(m[2:5, 1:5] == 0)
    # a box drawn in heatmap coordinates: pixel centres inside [1.6, 4.2] rows x [0.5, 2.4] cols
    b = box_mask((8, 8), rows=(4.2, 1.6), cols=(0.5, 2.4))
    hidden = np.argwhere(b == 0)
    assert {tuple(p) for p in hidden} == {(r, c) for r in (2, 3, 4) for c in (1, 2)}
    # a box sticking out of the image is clipped
    assert (box_mask((8, 8), rows=(-3, 1.2), cols=(6.5, 20)) == 0).sum() == 2 * 1
    # a tiny drag between centres still hides the nearest pixel; a box off the image hides nothing
    assert (box_mask((8, 8), rows=(3.1, 3.3), cols=(5.6, 5.8)) == 0).sum() == 1
    assert (box_mask((8, 8), rows=(20, 30), cols=(20, 30)) == 0).sum() == 0


def test_random_mask_fraction_and_seed():
    m = random_mask((200, 64), 0.3, seed=3)
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert (m == 0).mean() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_array_equal(m, random_mask((200, 64), 0.3, seed=3))
    assert (random_mask((8, 8), 0.0) == 1).all() and (random_mask((8, 8), 1.0) == 0).all()
    with pytest.raises(ValueError, match="fraction=1.5"):
        random_mask((8, 8), 1.5)


def test_mask_from_paint_hides_the_painted_cells():
    paint = np.zeros((80, 80))
    paint[20:40, 0:80] = 1.0  # rows 2 and 3 of an 8x8 image (10 canvas pixels per image pixel), fully painted
    paint[50:52, 0:10] = 1.0  # a fifth of cell (5, 0): under the 0.25 threshold
    m = mask_from_paint(paint, (8, 8))
    expected = np.ones((8, 8))
    expected[2:4, :] = 0
    np.testing.assert_array_equal(m, expected)
    assert mask_from_paint(np.zeros((30, 30)), (8, 8)).min() == 1


def test_rasterize_drawing_centres_and_scales_a_stroke():
    ink = np.zeros((280, 280))
    ink[20:120, 30:50] = 1.0  # a vertical bar in the top-left corner
    img = rasterize_drawing(ink, (28, 28)).reshape(28, 28)
    assert img.max() == pytest.approx(1.0) and img.min() == 0.0
    rows, cols = np.nonzero(img > 0.5)
    assert rows.max() - rows.min() + 1 == pytest.approx(20, abs=1)  # fills MNIST's 20-pixel box
    cy, cx = np.average(np.indices(img.shape), axis=(1, 2), weights=img)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by its centre of mass
    small = rasterize_drawing(ink, (8, 8), value_range=(0.0, 16.0)).reshape(8, 8)
    assert small.max() == pytest.approx(16.0) and (small > 8).any(axis=1).sum() == 8  # whole frame at 8x8
    np.testing.assert_array_equal(rasterize_drawing(np.zeros((50, 50)), (8, 8)), np.zeros(64))


# --- inpainting ------------------------------------------------------------------------------------------
def test_inpaint_keeps_observed_pixels_and_takes_the_model_elsewhere(x):
    m = random_mask(x.shape, 0.4, seed=0)
    np.testing.assert_array_equal(apply_mask(x, m), x * m)
    np.testing.assert_array_equal(apply_mask(x, m, fill=0.5), x * m + 0.5 * (1 - m))

    def half(z):
        return z * 0.5

    out = inpaint(half, x, m, iterations=1)
    np.testing.assert_allclose(out, x * m + 0.5 * (x * m) * (1 - m))  # x̂(x⁽⁰⁾) = 0.5·(x ⊙ m) in the holes
    # a reconstructor that knows the answer recovers x exactly, whatever is hidden
    oracle = lambda z: x  # noqa: E731
    np.testing.assert_allclose(inpaint(oracle, x, m, iterations=3), x)
    # each iteration applies the formula again: x⁽²⁾ = x ⊙ m + ½ x⁽¹⁾ ⊙ (1 - m)
    two = inpaint(half, x, m, iterations=2)
    np.testing.assert_allclose(two, x * m + 0.5 * out * (1 - m))
    with pytest.raises(ValueError, match="iterations=0"):
        inpaint(half, x, m, iterations=0)


def test_reconstructor_accepts_models_pca_and_callables(digits):
    model = build_model(ModelConfig(variant="sigmoid", code_size=4), 64, generator=torch.Generator().manual_seed(0))
    xs = digits.x_test[:5]
    np.testing.assert_allclose(reconstructor(model)(xs), reconstruct_array(model, xs))
    pca = fit_pca(digits.x_train, 8)
    np.testing.assert_allclose(reconstructor(pca)(xs), pca.reconstruct(xs))
    with pytest.raises(TypeError, match="cannot reconstruct"):
        reconstructor(3)


def test_psnr_curve_compares_models_pca_and_the_corrupted_input(digits):
    xs = digits.x_test[:50]
    pca = fit_pca(digits.x_train, 64)  # every component: PCA reproduces any input exactly
    identity = lambda z: z  # noqa: E731
    levels = [0.0, 0.2, 0.5]
    curves = psnr_curve({"copy": identity}, pca, xs, "gaussian", levels, seed=1)
    assert list(curves) == ["copy", "PCA", "corrupted input"]
    assert all(v.shape == (3,) for v in curves.values())
    # copying the input is exactly as good as the corrupted input itself, and so is full PCA
    np.testing.assert_allclose(curves["copy"][1:], curves["corrupted input"][1:])
    np.testing.assert_allclose(curves["PCA"][1:], curves["corrupted input"][1:], rtol=1e-4)
    expected = psnr(xs, corrupt_batch(xs, "gaussian", 0.2, seed=1))
    assert curves["corrupted input"][1] == pytest.approx(expected)
    assert curves["corrupted input"][0] == float("inf")
    assert curves["corrupted input"][1] > curves["corrupted input"][2]  # more noise, lower PSNR
    # hiding pixels: a model that fills holes with the truth scores inf; hiding nothing is inf too
    hide = psnr_curve({"oracle": lambda z: xs}, None, xs, HIDE_FRACTION, [0.0, 0.5], seed=0)
    assert list(hide) == ["oracle", "corrupted input"]
    assert np.all(np.isinf(hide["oracle"])) and np.isfinite(hide["corrupted input"][1])
