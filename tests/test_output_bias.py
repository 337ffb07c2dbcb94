"""Where the decoder's output bias starts (TrainConfig.output_bias): the data's mean, or the model's own init."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from aecore.config import ConfigError, ModelConfig, TrainConfig
from aecore.models import build_model, start_output_bias
from aecore.training import Evaluation, Finished, Trainer


def _logit(p):
    return np.log(p / (1 - p))


@pytest.mark.parametrize("variant, output", [("sigmoid", "sigmoid"), ("vae", "sigmoid"), ("deep", "sigmoid"),
                                             ("linear", "linear"), ("vae", "linear")])
def test_start_output_bias_is_the_mean_or_its_log_odds(variant, output):
    rng = np.random.default_rng(0)
    x = rng.random((500, 12)).astype(np.float32) * np.linspace(0.05, 0.95, 12, dtype=np.float32)
    x[:, 0] = 0.0  # an input that is always off: log-odds clipped, not -inf
    x[:, 1] = 1.0  # and one always on
    kw = {} if output == "sigmoid" else {"loss": "squared"}
    model = build_model(ModelConfig(variant=variant, code_size=3, output=output, **kw), 12,
                        generator=torch.Generator().manual_seed(0))
    bias = start_output_bias(model, torch.from_numpy(x))
    assert bias is model.output_bias and bias.dtype == torch.float32
    m = x.astype(np.float64).mean(0)
    if output == "sigmoid":
        want = _logit(np.clip(m, 1e-3, 1 - 1e-3))
        assert np.isclose(bias[0].item(), _logit(1e-3)) and np.isclose(bias[1].item(), -_logit(1e-3))
        # the decoder of a zero pre-activation reconstructs the mean
        np.testing.assert_allclose(torch.sigmoid(bias).detach().numpy()[2:], m[2:], rtol=1e-5)
    else:
        want = m
    np.testing.assert_allclose(bias.detach().numpy(), want, rtol=1e-5, atol=1e-6)


def test_start_output_bias_refuses_data_of_the_wrong_width():
    model = build_model(ModelConfig(variant="sigmoid", code_size=3), 12)
    with pytest.raises(ValueError, match=r"start_output_bias needs data of shape \(N, 12\), got \(5, 10\)"):
        start_output_bias(model, torch.zeros(5, 10))


def test_output_bias_is_checked_by_name():
    assert TrainConfig().output_bias == "data"
    with pytest.raises(ConfigError, match=r"output_bias='mean' is not allowed; choose one of 'data', 'init'"):
        TrainConfig(output_bias="mean")


def _first_batch_bias(mc, tc, data, monkeypatch):
    """The output bias as the model holds it on its first (fail-fast) batch, before any step."""
    seen = []
    from aecore.models.autoencoder import Autoencoder
    from aecore.models.vae import VAE

    for cls in (Autoencoder, VAE):
        orig = cls.loss_terms

        def spy(self, x, *a, _orig=orig, **k):
            if not seen:
                seen.append(self.output_bias.detach().clone())
            return _orig(self, x, *a, **k)

        monkeypatch.setattr(cls, "loss_terms", spy)
    evs = list(Trainer(mc, tc.replace(epochs=1, snapshot_every=1e9, progress_every=1e9), data).run())
    assert isinstance(evs[-1], Finished)
    return seen[0]


@pytest.mark.parametrize("variant", ["sigmoid", "vae"])
def test_the_trainer_starts_the_bias_from_the_training_data_or_leaves_the_init(digits, monkeypatch, variant):
    mc = ModelConfig(variant=variant, code_size=4)
    data_bias = _first_batch_bias(mc, TrainConfig(seed=3), digits, monkeypatch)
    m = np.clip(digits.x_train.astype(np.float64).mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(data_bias.numpy(), _logit(m), rtol=1e-5, atol=1e-6)
    monkeypatch.undo()
    init_bias = _first_batch_bias(mc, TrainConfig(seed=3, output_bias="init"), digits, monkeypatch)
    own = build_model(mc, digits.dim, generator=torch.Generator().manual_seed(3)).output_bias.detach()
    assert torch.equal(init_bias, own)  # zeros for the autoencoder, nn.Linear's draw for the VAE
    assert not torch.allclose(init_bias, data_bias, atol=0.1)


def test_a_subset_starts_from_its_own_mean(digits, monkeypatch):
    """With n_train the bias is the mean of the examples trained on, not of the whole set."""
    tc = TrainConfig(seed=0, n_train=50)
    got = _first_batch_bias(ModelConfig(variant="sigmoid", code_size=4), tc, digits, monkeypatch)
    idx = np.sort(np.random.default_rng(0).choice(digits.n_train, size=50, replace=False))
    m = np.clip(digits.x_train[idx].astype(np.float64).mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(got.numpy(), _logit(m), rtol=1e-5, atol=1e-6)


def test_starting_from_the_data_lowers_the_vae_loss_after_one_epoch(digits):
    """The reason for the default: the VAE starts from the mean image instead of grey (BENCHMARKS.md:
    MNIST test -ELBO after one epoch, 8 seeds). Here on digits, 1 epoch, 3 seeds: lower every time."""
    mc = ModelConfig(variant="vae", code_size=4, hidden=(64,))
    for seed in range(3):
        got = {}
        for start in ("data", "init"):
            tc = TrainConfig(epochs=1, batch_size=64, lr=1e-3, seed=seed, output_bias=start,
                             snapshot_every=1e9, progress_every=1e9)
            evs = list(Trainer(mc, tc, digits, eval_each_epoch=True).run())
            got[start] = [e.neg_elbo for e in evs if isinstance(e, Evaluation)][-1]
        assert got["data"] < got["init"] - 1.0, (seed, got)


def test_cli_output_bias_reaches_the_stored_config(capsys, tmp_path):
    import json

    from aecore.cli import main

    code = main(["train", "--variant", "vae", "--dataset", "digits", "-k", "2", "--epochs", "1",
                 "--output-bias", "init", "--json", "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["output_bias"] == "init"
    assert main(["train", "--variant", "vae", "--dataset", "digits", "--output-bias", "mean"]) == 2
    assert "invalid choice: 'mean'" in capsys.readouterr().err


def test_sidebar_output_bias_reaches_the_config_and_the_url(at):
    at.run()
    assert at.session_state["train_cfg"].output_bias == "data" and at.query_params["obias"] == "data"
    at.selectbox(key="sb_output_bias").set_value("init").run()
    assert not at.exception
    assert at.session_state["train_cfg"].output_bias == "init" and at.query_params["obias"] == "init"


def test_sidebar_refuses_shifts_too_large_for_the_images(at):
    at.run()
    at.number_input(key="sb_augment_shift").set_value(8).run()
    assert not at.exception
    assert at.session_state["train_cfg"] is None
    assert any("Random shifts (pixels): augment_shift=8 must be smaller than the images of 'digits' (8x8 pixels)"
               in e.value for e in at.sidebar.error)
    at.number_input(key="sb_augment_shift").set_value(7).run()
    assert not at.sidebar.error and at.session_state["train_cfg"].augment_shift == 7


def test_sidebar_refuses_shifts_on_an_uploaded_table(at):
    from dashboard import uploads
    from dashboard.state import UPLOADS_KEY

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).random((40, 6)))
    up = uploads.save_upload(buf.getvalue(), "table.npy", uploads.new_session_key())
    ds = uploads.load_upload(up)
    assert ds.kind == "array"
    at.run()
    at.session_state[UPLOADS_KEY] = {up.dataset_name: (up, ds)}  # as after an upload: the session holds it
    at.run()
    at.selectbox(key="sb_dataset").set_value(up.dataset_name).run()
    assert not at.exception and at.session_state["train_cfg"].dataset == up.dataset_name
    at.number_input(key="sb_augment_shift").set_value(1).run()
    assert at.session_state["train_cfg"] is None
    assert any("Random shifts (pixels): augment_shift=1 moves images, but 'table.npy' holds array examples"
               in e.value for e in at.sidebar.error)
