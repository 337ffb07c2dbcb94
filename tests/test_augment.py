"""Random-shift augmentation (TrainConfig.augment_shift): what moves where, and who may use it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aecore.augment import check_shift, random_shift
from aecore.config import ConfigError, ModelConfig, TrainConfig
from aecore.data import Dataset
from aecore.training import Failed, Finished, Trainer


def _offsets(x, y, H, W, C=1):
    """For one-hot images x -> y: (dy, dx) each pixel moved by (None if it fell off the image)."""
    out = []
    for a, b in zip(x.reshape(-1, H, W, C), y.reshape(-1, H, W, C)):
        (r0, c0, _), = np.argwhere(a.numpy() > 0)
        hit = np.argwhere(b.numpy() > 0)
        out.append(None if len(hit) == 0 else (int(hit[0][0] - r0), int(hit[0][1] - c0)))
    return out


def test_a_pixel_moves_by_at_most_shift_and_every_offset_occurs():
    H, W, s, B = 9, 7, 2, 2000
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(B, H * W)
    x[:, 4 * W + 3] = 1.0  # the centre pixel: never pushed off by a shift of 2
    y = random_shift(x, (H, W), s, g)
    offs = _offsets(x, y, H, W)
    assert all(o is not None for o in offs) and float(y.sum()) == B  # nothing lost, nothing added
    assert {o for o in offs} == {(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1)}
    counts = np.bincount([(dy + s) * (2 * s + 1) + dx + s for dy, dx in offs], minlength=25)
    assert counts.min() > B / 25 * 0.5  # roughly uniform over the 25 offsets


def test_whole_image_moves_rigidly_with_zero_fill_and_channels_stay_together():
    H, W, C = 5, 6, 3
    g = torch.Generator().manual_seed(1)
    x = torch.arange(1, 1 + 4 * H * W * C, dtype=torch.float32).reshape(4, H * W * C)
    y = random_shift(x, (H, W, C), 1, g).reshape(4, H, W, C)
    xi = x.reshape(4, H, W, C)
    for b in range(4):
        # find the offset from one interior pixel, then check every pixel against it
        (r, c), = {(int(i), int(j)) for i, j, _ in np.argwhere(y[b].numpy() == float(xi[b, 2, 2, 0]))}
        dy, dx = r - 2, c - 2
        for i in range(H):
            for j in range(W):
                si, sj = i - dy, j - dx
                want = xi[b, si, sj] if 0 <= si < H and 0 <= sj < W else torch.zeros(C)
                assert torch.equal(y[b, i, j], want), (b, i, j)


def test_shift_zero_is_the_identity_and_a_seed_repeats():
    x = torch.rand(8, 64)
    assert random_shift(x, (8, 8), 0) is x
    a = random_shift(x, (8, 8), 2, torch.Generator().manual_seed(5))
    b = random_shift(x, (8, 8), 2, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"augment_shift=-1 must be >= 0"):
        TrainConfig(augment_shift=-1)
    with pytest.raises(ValueError, match=r"augment_shift=2 moves images, but 'blobs' holds array examples"):
        check_shift(2, (10,), "array", "blobs")
    with pytest.raises(ValueError, match=r"augment_shift=8 must be smaller than the images of 'digits' \(8x8"):
        check_shift(8, (8, 8), "image", "digits")
    check_shift(0, (10,), "array")  # no shift: any data


def test_trainer_fails_with_the_reason_on_non_image_data():
    rng = np.random.default_rng(0)
    x = rng.random((40, 6), dtype=np.float32)
    data = Dataset(name="table", x_train=x, y_train=None, x_test=x[:8].copy(), y_test=None, shape=(6,),
                   kind="array", value_range=(0.0, 1.0))
    evs = list(Trainer(ModelConfig(variant="sigmoid", code_size=2), TrainConfig(epochs=1, augment_shift=1), data).run())
    assert isinstance(evs[-1], Failed) and "augment_shift=1 moves images" in evs[-1].reason


def test_training_with_shifts_sees_shifted_batches(digits, monkeypatch):
    """The model is fed moved images (input and target the same batch), not the stored ones."""
    seen = []
    from aecore.models.autoencoder import Autoencoder

    def spy(orig):
        def fn(self, x, *a, **k):
            if self.training and x.shape[0] == 64:
                seen.append(x.detach().clone())
            return orig(self, x, *a, **k)
        return fn

    # the fail-fast check calls loss_terms; the steps, their gradients written out, loss_and_grads
    monkeypatch.setattr(Autoencoder, "loss_terms", spy(Autoencoder.loss_terms))
    monkeypatch.setattr(Autoencoder, "loss_and_grads", spy(Autoencoder.loss_and_grads))
    mc = ModelConfig(variant="sigmoid", code_size=8)
    tc = TrainConfig(epochs=1, batch_size=64, augment_shift=1, snapshot_every=1e9, progress_every=1e9)
    evs = list(Trainer(mc, tc, digits).run())
    assert isinstance(evs[-1], Finished)
    train_rows = {tuple(r) for r in np.round(digits.x_train, 5)}
    batches = torch.cat(seen[1:]).numpy()  # seen[0] is the fail-fast check on stored rows
    stored = sum(tuple(r) in train_rows for r in np.round(batches, 5))
    # a 1/9 chance per image of (0, 0); a few more shifted images that happen to equal a stored one
    assert stored < 0.2 * len(batches), (stored, len(batches))
    # ink only leaves (8x8 digits fill their frame) and is never made up
    mass, stored_mass = batches.sum(axis=1).mean(), digits.x_train.sum(axis=1).mean()
    assert 0.7 * stored_mass < mass < stored_mass


def test_sidebar_shift_reaches_the_config_and_the_url(at):
    at.run()
    assert at.session_state["train_cfg"].augment_shift == 0
    at.number_input(key="sb_augment_shift").set_value(2).run()
    assert not at.exception
    assert at.session_state["train_cfg"].augment_shift == 2 and at.query_params["shift"] == "2"
