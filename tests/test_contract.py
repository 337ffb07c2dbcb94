"""The contract every registered variant keeps (like scikit-learn's ``parametrize_with_checks``).

Parametrized over ``variant_names()``, so a newly registered variant is checked automatically.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from aecore.checkpoint import load_run, save_run
from aecore.config import ConfigError, ModelConfig, TrainConfig
from aecore.models import build_model
from aecore.registry import get_variant, variant_names
from aecore.training import Failed, Finished, Progress, Snapshot, Trainer

VARIANTS = variant_names()
D = 64  # digits: 8x8
SIZES = {"undercomplete": 5, "overcomplete": 100}  # K < D and K > D


def _model(variant, k, seed=0):
    cfg = ModelConfig(variant=variant, code_size=k)
    return cfg, build_model(cfg, D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def batch(digits):
    return torch.as_tensor(np.array(digits.x_train[:16]))  # (16, 64), a writable copy


def test_registry_lists_the_documented_variants():
    assert {"linear", "tied", "sigmoid", "relu", "deep", "denoising", "sparse", "contractive", "vae"} <= set(VARIANTS)


@pytest.mark.parametrize("k", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("variant", VARIANTS)
class TestEveryVariant:
    def test_forward_shapes(self, variant, k, batch):
        cfg, model = _model(variant, k)
        model.eval()
        out = model(batch)
        B = batch.shape[0]
        assert out.code.shape == (B, k)
        assert out.recon.shape == (B, D)
        assert out.logits.shape == (B, D)
        assert model.encode(batch).shape == (B, k)
        assert model.decode(out.code).shape == (B, D)
        assert model.W.shape[1] == D
        assert model.decoder_weight.shape[0] == D
        if cfg.output == "sigmoid":
            assert torch.equal(out.recon, torch.sigmoid(out.logits))
            assert out.recon.min() >= 0 and out.recon.max() <= 1
        else:
            assert torch.equal(out.recon, out.logits)

    def test_loss_terms_are_finite_scalars_named_like_the_weights(self, variant, k, batch):
        cfg, model = _model(variant, k)
        model.train()
        terms = model.loss_terms(batch, generator=torch.Generator().manual_seed(1))
        assert set(terms) == set(model.loss_weights())
        assert "recon" in terms
        for name, t in terms.items():
            assert t.ndim == 0, name
            assert torch.isfinite(t), f"term {name!r} = {t}"

    def test_backward_reaches_every_parameter(self, variant, k, batch):
        cfg, model = _model(variant, k)
        model.train()
        terms = model.loss_terms(batch, generator=torch.Generator().manual_seed(1))
        weights = model.loss_weights()
        loss = sum(weights[n] * t for n, t in terms.items())
        loss.backward()
        params = dict(model.named_parameters())
        assert params, "a model without parameters"
        for name, p in params.items():
            assert p.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
        # the first layer's filters W, what the dashboard shows, is trained
        assert model.W.grad is not None and model.W.grad.abs().sum() > 0

    def test_model_config_json_round_trip(self, variant, k):
        cfg = ModelConfig(variant=variant, code_size=k)
        back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg
        assert back.to_dict() == cfg.to_dict()
        # every default was resolved: a stored config is complete
        assert all(v is not None for v in cfg.to_dict().values())

    def test_checkpoint_round_trip_gives_identical_outputs(self, variant, k, batch, tmp_path):
        cfg, model = _model(variant, k)
        with torch.no_grad():  # move every tensor away from its initial value (biases start at 0)
            g = torch.Generator().manual_seed(5)
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        tc = TrainConfig(epochs=3, lr=2e-3, seed=7, n_train=100)
        save_run(tmp_path / "run", cfg, tc, model, {"test_mse": 0.5}, [{"step": 1, "loss": 2.0}])
        run = load_run(tmp_path / "run")
        assert run.model_cfg == cfg and run.train_cfg == tc
        assert run.metrics == {"test_mse": 0.5}
        assert run.history == [{"step": 1.0, "loss": 2.0}]
        assert type(run.model) is type(model)
        assert not run.model.training
        model.eval()
        with torch.no_grad():
            a, b = model(batch), run.model(batch)
        assert torch.equal(a.code, b.code)
        assert torch.equal(a.recon, b.recon)
        sa, sb = model.state_dict(), run.model.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_epoch_run_emits_progress_snapshot_finished(variant, digits):
    mc = ModelConfig(variant=variant, code_size=6)
    tc = TrainConfig(epochs=1, batch_size=64, n_train=256, device="cpu", progress_every=0.0, snapshot_every=0.0)
    events = list(Trainer(mc, tc, digits).run())
    kinds = {type(e) for e in events}
    assert not any(isinstance(e, Failed) for e in events), [e.reason for e in events if isinstance(e, Failed)]
    assert {Progress, Snapshot, Finished} <= kinds
    assert isinstance(events[-1], Finished) and sum(isinstance(e, Finished) for e in events) == 1
    fin = events[-1]
    assert fin.stopped is False
    m = fin.metrics
    for key in ("test_mse", "test_sse", "pca_sse", "pca_mse", "train_loss"):
        assert math.isfinite(m[key]) and m[key] >= 0, (key, m[key])
    assert m["steps"] == 4 and m["epochs"] == 1.0  # 256 examples / batch 64
    assert m["variant"] == variant and m["code_size"] == 6
    assert m["test_sse"] == pytest.approx(m["test_mse"] * D)
    if variant == "vae":
        assert math.isfinite(m["test_elbo"])
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == 4
    assert len(fin.history) == len(progress)


# --- validation: messages name the parameter, the bad value and what is allowed ----------------
@pytest.mark.parametrize("cls, key", [(ModelConfig, "code_sise"), (ModelConfig, "lr"),
                                      (TrainConfig, "epoch"), (TrainConfig, "code_size")])
def test_unknown_config_keys_raise_naming_the_key(cls, key):
    good = cls().to_dict()
    with pytest.raises(ConfigError, match=rf"unknown {cls.__name__} key\(s\): {key};"):
        cls.from_dict({**good, key: 1})


def test_from_dict_rejects_a_non_dict():
    with pytest.raises(ConfigError, match="ModelConfig must be built from a dict, got list"):
        ModelConfig.from_dict([1, 2])


def test_train_config_json_round_trip():
    tc = TrainConfig(dataset="mnist", epochs=7, batch_size=32, lr=3e-3, optimizer="sgd", lr_schedule="cosine",
                     weight_decay=1e-4, seed=42, device="cpu", n_train=500, snapshot_every=1.0, progress_every=0.2)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    assert TrainConfig.from_dict(json.loads(json.dumps(TrainConfig().to_dict()))) == TrainConfig()


def test_model_config_round_trip_keeps_explicit_choices():
    cfg = ModelConfig(variant="deep", code_size=3, hidden=(20, 10), activation="tanh", output="linear",
                      loss="squared", noise="gaussian", noise_level=0.3, tied=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["hidden"] == [20, 10]
    assert ModelConfig.from_dict(d) == cfg


@pytest.mark.parametrize("make, message", [
    (lambda: ModelConfig(code_size=0), r"code_size=0 must be >= 1"),
    (lambda: ModelConfig(code_size=2.5), r"code_size=2.5 must be an integer"),
    (lambda: ModelConfig(code_size=True), r"code_size=True must be an integer"),
    (lambda: ModelConfig(code_size=10**9), r"code_size=1000000000 must be <= 100000"),
    (lambda: ModelConfig(activation="softmax"), r"activation='softmax' is not allowed; choose one of 'linear'"),
    (lambda: ModelConfig(variant="sparse", reg=-0.5), r"reg=-0.5 must be >= 0"),
    (lambda: ModelConfig(variant="sparse", reg=float("nan")), r"reg=nan must be finite"),
    (lambda: ModelConfig(variant="sigmoid", output="linear", loss="cross-entropy"),
     r"loss='cross-entropy' needs output='sigmoid' .*got output='linear'"),
    (lambda: ModelConfig(variant="linear", loss="cross-entropy"), r"loss='cross-entropy' needs output='sigmoid'"),
    (lambda: ModelConfig(noise="masking", noise_level=1.5), r"noise_level=1.5 is a fraction .* must be <= 1"),
    (lambda: ModelConfig(noise="blur"), r"noise='blur' is not allowed"),
    (lambda: ModelConfig(variant="sigmoid", hidden=(10,)), r"hidden=\[10\] is not used by variant 'sigmoid'"),
    (lambda: ModelConfig(variant="deep", hidden=(10, 0)), r"hidden\[1\]=0 must be >= 1"),
    (lambda: ModelConfig(tied="yes"), r"tied='yes' must be true or false"),
    (lambda: ModelConfig(variant="vae", beta=-1.0), r"beta=-1.0 must be >= 0"),
    (lambda: TrainConfig(lr=1e6), r"lr=1000000.0 must be <= 10"),
    (lambda: TrainConfig(lr=0.0), r"lr=0.0 must be > 0"),
    (lambda: TrainConfig(epochs=0), r"epochs=0 must be >= 1"),
    (lambda: TrainConfig(batch_size=0), r"batch_size=0 must be >= 1"),
    (lambda: TrainConfig(optimizer="rmsprop"), r"optimizer='rmsprop' is not allowed"),
    (lambda: TrainConfig(device="tpu"), r"device='tpu' is not allowed"),
    (lambda: TrainConfig(n_train=1), r"n_train=1 must be >= 2"),
    (lambda: TrainConfig(seed=-1), r"seed=-1 must be >= 0"),
    (lambda: TrainConfig(dataset=""), r"dataset='' must be a dataset name"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_values_raise_with_a_message(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "reg" not in get_variant(v).uses])
def test_reg_on_a_variant_without_regularizer_is_refused(variant):
    with pytest.raises(ConfigError, match=rf"reg=0.1 is not used by variant '{variant}'"):
        ModelConfig(variant=variant, reg=0.1)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "reg" in get_variant(v).uses])
def test_reg_on_a_variant_with_regularizer_is_weighted(variant):
    cfg = ModelConfig(variant=variant, code_size=3, reg=0.25)
    model = build_model(cfg, D)
    assert sorted(model.loss_weights().values()) == [0.25, 1.0]


def test_numpy_scalars_are_accepted_and_stored_as_plain_numbers():
    """scikit-learn accepts numpy integers/floats (numbers.Integral/Real): ``for k in np.arange(...)``
    or a value read from an array must not be refused as 'not an integer'."""
    cfg = ModelConfig(variant="sparse", code_size=np.int64(8), reg=np.float32(0.5))
    assert cfg == ModelConfig(variant="sparse", code_size=8, reg=0.5)
    tc = TrainConfig(epochs=np.int64(3), lr=np.float32(0.25), seed=np.int32(1))
    assert tc == TrainConfig(epochs=3, lr=0.25, seed=1)
    json.dumps(cfg.to_dict())  # still plain JSON
    json.dumps(tc.to_dict())
    assert type(cfg.code_size) is int and type(tc.lr) is float


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match=r"variant='nope' is not registered; choose one of .*sigmoid"):
        ModelConfig(variant="nope")


def test_build_model_checks_input_dim():
    with pytest.raises(ValueError, match=r"input_dim=0 must be a positive integer"):
        build_model(ModelConfig(), 0)
