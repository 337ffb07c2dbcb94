"""bfloat16 mixed precision (TrainConfig.precision): products in bfloat16, losses in float32.

A run in bfloat16 must really differ from float32 (else autocast was never entered) and land
close to it (else the loss or the weights were kept in bfloat16). CPU autocast works on any
x86 machine; it is only fast with bfloat16 units (AVX512-BF16 / AMX), which the bench measures.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aecore import objectives
from aecore.cli import main
from aecore.config import ConfigError, ModelConfig, TrainConfig
from aecore.training import Finished, Trainer, mixed_precision


def _finish(mc, tc, data):
    for ev in Trainer(mc, tc, data).run():
        assert type(ev).__name__ != "Failed", ev.reason
        if isinstance(ev, Finished):
            return ev


def test_precision_is_validated_and_round_trips():
    assert TrainConfig().precision == "float32"
    with pytest.raises(ConfigError, match=r"precision='float16' is not allowed.*'float32', 'bfloat16'"):
        TrainConfig(precision="float16")
    tc = TrainConfig(precision="bfloat16")
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    # a run stored before the field existed still loads, as float32
    old = {k: v for k, v in tc.to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict(old).precision == "float32"


@pytest.mark.parametrize("mc", [ModelConfig(variant="sigmoid", code_size=16),
                                ModelConfig(variant="deep", code_size=8, hidden=(48, 24)),
                                ModelConfig(variant="vae", code_size=4, hidden=(32,)),
                                ModelConfig(variant="contractive", code_size=12, reg=0.1),
                                ModelConfig(variant="sparse", code_size=12, reg=1e-3)],
                         ids=lambda m: m.variant)
def test_bfloat16_training_differs_from_float32_but_lands_close(digits, mc):
    base = TrainConfig(epochs=8, batch_size=64, lr=1e-2, seed=3, snapshot_every=1e9, progress_every=1e9)
    f32 = _finish(mc, base, digits)
    bf16 = _finish(mc, base.replace(precision="bfloat16"), digits)
    w32, w16 = f32.model.W.detach(), bf16.model.W.detach()
    assert w16.dtype == torch.float32  # master weights stay float32
    assert not torch.equal(w32, w16), "bfloat16 training gave float32's weights bit for bit: autocast not used"
    for key in ("test_sse", "train_loss"):
        a, b = f32.metrics[key], bf16.metrics[key]
        assert np.isfinite(b) and b == pytest.approx(a, rel=0.05), (key, a, b)
    if mc.variant == "vae":
        assert bf16.metrics["test_elbo"] == pytest.approx(f32.metrics["test_elbo"], rel=0.05)


def test_loss_terms_are_float32_sums_of_bfloat16_outputs():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(64, 784, generator=g)).to(torch.bfloat16)
    x = torch.rand(64, 784, generator=g).round()
    ce = objectives.cross_entropy(logits, x)
    assert ce.dtype == torch.float32
    # the same numbers upcast first: the bfloat16 logits are exact in float32, so only the sums differ
    ref = torch.nn.functional.binary_cross_entropy_with_logits(logits.double(), x.double(), reduction="none")
    assert float(ce) == pytest.approx(float(ref.sum(1).mean()), rel=1e-6)
    recon = torch.sigmoid(logits)
    se = objectives.squared_error(recon, x)
    assert se.dtype == torch.float32
    assert float(se) == pytest.approx(float((recon.double() - x.double()).square().sum(1).mean()), rel=1e-6)
    mu, logvar = torch.randn(64, 20, generator=g).bfloat16(), torch.randn(64, 20, generator=g).bfloat16()
    kl = objectives.gaussian_kl(mu, logvar)
    m, lv = mu.double(), logvar.double()
    assert kl.dtype == torch.float32
    assert float(kl) == pytest.approx(float((-0.5 * (1 + lv - m * m - lv.exp())).sum(1).mean()), rel=1e-6)


def test_mixed_precision_context_puts_products_in_bfloat16():
    a, w = torch.randn(8, 16), torch.randn(4, 16)
    with mixed_precision("float32", torch.device("cpu")):
        assert torch.nn.functional.linear(a, w).dtype == torch.float32
    with mixed_precision("bfloat16", torch.device("cpu")):
        assert torch.nn.functional.linear(a, w).dtype == torch.bfloat16


def test_precision_on_a_device_without_autocast_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(ValueError, match=r"precision='bfloat16' is not available on device 'cpu'"):
        mixed_precision("bfloat16", torch.device("cpu"))


@pytest.mark.parametrize("flag, value, key, stored", [("--precision", "bfloat16", "precision", "bfloat16"),
                                                      ("--augment-shift", "1", "augment_shift", 1)])
def test_cli_training_options_reach_the_stored_config(capsys, tmp_path, flag, value, key, stored):
    code = main(["train", "--variant", "sigmoid", "--dataset", "digits", "-k", "4", "--epochs", "1",
                 flag, value, "--json", "--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["train"][key] == stored


def test_cli_refuses_an_unknown_precision(capsys):
    assert main(["train", "--variant", "sigmoid", "--dataset", "digits", "--precision", "half"]) == 2
    assert "invalid choice: 'half'" in capsys.readouterr().err


def test_sidebar_precision_reaches_the_train_config(at):
    at.run()
    assert at.session_state["train_cfg"].precision == "float32"
    at.selectbox(key="sb_precision").set_value("bfloat16").run()
    assert not at.exception
    assert at.session_state["train_cfg"].precision == "bfloat16"
    assert at.query_params["precision"] == "bfloat16"


# --- a CPU without bfloat16 units: bfloat16 is emulated (a tenth of float32's speed on a Zen 3) ----------
def test_the_bf16_warning_is_given_only_where_the_cpu_lacks_the_units():
    from aecore import kernels

    assert kernels.bf16_warning(True) is None
    assert kernels.bf16_warning(None) is None or kernels.bf16_units() is False  # unknown: no claim
    text = kernels.bf16_warning(False)
    assert "no bfloat16 units (AVX512-BF16 or AMX)" in text and "use float32" in text
    assert kernels.bf16_warning() == (text if kernels.bf16_units() is False else None)  # this CPU's answer


@pytest.mark.parametrize("units", [False, True])
def test_training_in_bf16_on_a_cpu_without_the_units_warns(monkeypatch, digits, units):
    from aecore import kernels

    monkeypatch.setattr(kernels, "bf16_units", lambda: units)
    mc, tc = ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=1, device="cpu", precision="bfloat16")
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert _finish(mc, tc, digits) is not None
        _finish(mc, tc.replace(precision="float32"), digits)
    slow = [w for w in seen if "no bfloat16 units" in str(w.message)]
    assert len(slow) == (0 if units else 1)  # once, for the bfloat16 run only
    if slow:
        assert issubclass(slow[0].category, RuntimeWarning)
        assert str(slow[0].message).startswith("precision='bfloat16': this CPU has no bfloat16 units")


@pytest.mark.parametrize("units", [False, True])
def test_the_sidebar_warns_under_bf16_on_such_a_cpu(at, monkeypatch, units):
    from aecore import kernels

    monkeypatch.setattr(kernels, "bf16_units", lambda: units)
    at.run()
    at.selectbox(key="sb_precision").set_value("bfloat16").run()
    shown = [c.value for c in at.sidebar.caption if "bfloat16 on the CPU" in c.value]
    assert len(shown) == (0 if units else 1)
    if shown:
        assert "a tenth of float32's speed" in shown[0]
    at.selectbox(key="sb_precision").set_value("float32").run()
    assert not [c for c in at.sidebar.caption if "bfloat16 on the CPU" in c.value]
