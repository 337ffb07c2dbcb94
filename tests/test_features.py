"""aecore.features: linear probes and greedy layer-wise pre-training, on digits (small, fast)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from aecore.cli import main
from aecore.config import ConfigError
from aecore.features import PretrainConfig, labelled_subset, pretrain, probe


@pytest.fixture(scope="module")
def digits_ds():
    from aecore.data import load

    return load("digits")


def test_labelled_subset_is_class_balanced_and_seeded():
    y = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 3])
    idx = labelled_subset(y, 100, seed=0)
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    counts = np.bincount(y[idx], minlength=10)
    assert counts[9] == 3 and counts[:9].min() >= 10  # the short class gives all it has, the rest fill up
    assert np.array_equal(idx, labelled_subset(y, 100, seed=0))
    assert not np.array_equal(idx, labelled_subset(y, 100, seed=1))
    assert np.array_equal(labelled_subset(y, None), np.arange(len(y)))
    y4 = np.repeat(np.arange(4), 10)
    assert np.bincount(y4[labelled_subset(y4, 8)]).tolist() == [2, 2, 2, 2]


def test_probe_on_digits(digits_ds):
    res = probe(digits_ds, variants=("sigmoid",), code_size=8, labels=(100, None), epochs=5, lr=1e-2,
                device="cpu")
    assert res.labels == ("100", "all")
    assert set(res.accuracy) == {"raw", "pca", "sigmoid"}
    for name, accs in res.accuracy.items():
        assert set(accs) == {"100", "all"}
        assert 0.5 < accs["100"] <= accs["all"] + 0.05 <= 1.05, (name, accs)  # 10 classes: chance is 0.1
    assert res.accuracy["raw"]["all"] > 0.9
    assert res.train_metrics["sigmoid"]["code_size"] == 8
    d = res.to_dict()
    assert json.loads(json.dumps(d))["accuracy"]["pca"]["100"] == pytest.approx(res.accuracy["pca"]["100"])


def test_probe_rejects_unknown_variants_and_bad_labels(digits_ds):
    with pytest.raises(ConfigError, match="variant='nope'"):
        probe(digits_ds, variants=("nope",))
    with pytest.raises(ConfigError, match=r"labels\[0\]=0 must be >= 1"):
        probe(digits_ds, labels=(0,))


def test_pretrain_on_digits_returns_curves_and_filters(digits_ds):
    cfg = PretrainConfig(hidden=(32, 16), pretrain_epochs=3, pretrain_lr=1e-2, labels=(50,), finetune_epochs=30,
                         finetune_lr=1e-2, n_points=4, device="cpu")
    res = pretrain(digits_ds, cfg)
    assert [r["code_size"] for r in res.layer_losses] == [32, 16]
    assert [r["input_dim"] for r in res.layer_losses] == [64, 32]  # layer 2 trained on layer 1's codes
    c = res.curves["50"]
    assert c["epoch"] == [0, 10, 20, 30]
    for which in ("pretrained", "random"):
        assert len(c[which]) == len(c[f"{which}_loss"]) == 4
        assert all(0 <= a <= 1 for a in c[which])
        assert res.accuracy[which]["50"] == c[which][-1] == res.per_subset[which]["50"][0]
        assert res.filters["50"][which].shape == (32, 64)
    assert c["random"][-1] > 0.3  # 10 classes: chance is 0.1
    # the pre-trained network starts from the first autoencoder's encoder, and fine-tuning moves it
    assert not np.allclose(res.filters["50"]["init"], res.filters["50"]["pretrained"])
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) >= {"pretrained", "random", "curves", "labels", "hidden", "seconds"}


def test_without_pretraining_both_networks_are_the_same(digits_ds):
    # pretrain_epochs=0: the "pre-trained" network keeps its random init, which is the baseline's;
    # same labelled examples, same order, same head: the curves must coincide exactly
    cfg = PretrainConfig(hidden=(16,), pretrain_epochs=0, labels=(40,), finetune_epochs=4, n_points=3, device="cpu")
    res = pretrain(digits_ds, cfg)
    assert res.curves["40"]["pretrained"] == res.curves["40"]["random"]
    assert np.array_equal(res.filters["40"]["pretrained"], res.filters["40"]["random"])


def test_pretrain_config_validates():
    with pytest.raises(ConfigError, match=r"hidden\[1\]=0 must be >= 1"):
        PretrainConfig(hidden=(10, 0))
    with pytest.raises(ConfigError, match="noise_level=2"):
        PretrainConfig(noise="masking", noise_level=2)
    with pytest.raises(ConfigError, match="activation='softmax'"):
        PretrainConfig(activation="softmax")


def test_probe_and_pretrain_cli_json(capsys):
    code = main(["probe", "--dataset", "digits", "--variants", "tied", "--code-size", "4", "--epochs", "2",
                 "--labels", "100", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["labels"] == ["100"] and set(last["accuracy"]) == {"raw", "pca", "tied"}
    code = main(["pretrain", "--dataset", "digits", "--hidden", "16", "--pretrain-epochs", "1", "--labels", "30",
                 "--finetune-epochs", "2", "--points", "2", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert set(last["pretrained"]) == set(last["random"]) == {"30"}
    assert last["curves"]["30"]["epoch"] == [0, 2]
    assert main(["probe", "--dataset", "digits", "--variants", "bogus"]) == 2
    assert "variant='bogus'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, check", [
    (["probe", "--variants", "tied,sigmoid", "--code-size", "4", "--epochs", "100000", "--labels", "100"],
     lambda last: set(last["accuracy"]) == {"raw", "pca", "tied"}),  # tied stopped and probed, sigmoid skipped
    (["pretrain", "--hidden", "16", "--pretrain-epochs", "0", "--labels", "30", "--finetune-epochs", "100000",
      "--points", "2"],
     lambda last: set(last["pretrained"]) == set(last["random"]) == {"30"}),
], ids=["probe", "pretrain"])
def test_ctrl_c_stops_probe_and_pretrain_and_reports_what_finished(argv, check):
    from interrupt import interrupt

    code, lines, err = interrupt([*argv, "--dataset", "digits", "--device", "cpu", "--json"],
                                 ready=lambda line: line.get("event") == "stage", delay=1.0)  # training has begun
    assert code == 130, err
    assert f"aecore {argv[0]}: SIGINT: stopping" in err and "Traceback" not in err
    last = lines[-1]
    assert last["stopped"] is True and check(last), last
