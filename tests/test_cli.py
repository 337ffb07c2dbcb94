"""The CLI contract that benchmarks and pages rely on."""
import json
import subprocess
import sys

import numpy as np
import pytest

from aecore.cli import main
from aecore.registry import variant_names

REQUIRED = {"variant", "dataset", "code_size", "epochs", "device", "seconds", "samples_per_second",
            "train_loss", "test_mse", "test_sse", "pca_mse", "pca_sse"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert all(isinstance(obj, dict) for obj in lines)
    return lines[-1]


@pytest.mark.parametrize("variant", variant_names())
def test_one_epoch_run_on_digits_prints_the_contract(capsys, tmp_path, variant):
    code, out, err = run_cli(capsys, "train", "--variant", variant, "--dataset", "digits", "--code-size", "4",
                             "--epochs", "1", "--json", "--out", str(tmp_path / "run"))
    assert code == 0, err
    final = last_json(out)
    assert REQUIRED <= set(final), REQUIRED - set(final)
    assert final["variant"] == variant and final["code_size"] == 4 and final["dataset"] == "digits"
    assert final["epochs"] == 1.0
    for key in ("test_mse", "test_sse", "pca_mse", "pca_sse", "train_loss"):
        assert np.isfinite(final[key]) and final[key] >= 0 or key == "train_loss"
    assert final["test_sse"] == pytest.approx(final["test_mse"] * 64, rel=1e-6)  # 8x8 pixels
    if variant in ("linear", "tied"):
        assert 0 <= final["max_principal_angle_deg"] <= 90
    if variant == "vae":
        assert final["test_elbo"] < 0
    # the saved run loads back through `aecore show`
    code, out, err = run_cli(capsys, "show", final["run_dir"], "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["model"]["variant"] == variant
    assert shown["metrics"]["test_sse"] == pytest.approx(final["test_sse"])


def test_noise_and_hidden_options_reach_the_config(capsys, tmp_path):
    code, out, err = run_cli(capsys, "train", "--variant", "deep", "--dataset", "digits", "-k", "3",
                             "--hidden", "32,16", "--noise", "masking:0.2", "--epochs", "1", "--json",
                             "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert last_json(out)["run_dir"] == str(tmp_path / "r")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"]["hidden"] == [32, 16]
    assert cfg["model"]["noise"] == "masking" and cfg["model"]["noise_level"] == 0.2


@pytest.mark.parametrize("argv, message", [
    (["train", "--variant", "tied", "--dataset", "digits", "--code-size", "0"], "code_size=0 must be >= 1"),
    (["train", "--variant", "nope", "--dataset", "digits", "-k", "2"], "invalid choice: 'nope'"),
    (["train", "--variant", "sparse", "--dataset", "digits", "-k", "2", "--reg", "-1"], "reg=-1.0 must be >= 0"),
    (["train", "--variant", "tied", "--dataset", "digits", "-k", "2", "--lr", "1e6"], "lr=1000000.0 must be <= 10"),
    (["train", "--variant", "tied", "--dataset", "nosuchset", "-k", "2"], "nosuchset"),
    (["train", "--variant", "deep", "--dataset", "digits", "-k", "2", "--hidden", "10,x"], "not a comma-separated"),
    (["train", "--variant", "tied", "--data-file", "/no/such/file.npy", "-k", "2"], "file.npy"),
    (["show", "/no/such/run"], "does not exist"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_data_file_csv_and_console_script(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((60, 12)).round(3)
    path = tmp_path / "x.csv"
    np.savetxt(path, x, delimiter=",")
    proc = subprocess.run([sys.executable, "-m", "aecore.cli", "train", "--variant", "linear", "--data-file",
                           str(path), "-k", "3", "--epochs", "2", "--json", "--no-save"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    final = last_json(proc.stdout)
    assert final["code_size"] == 3 and final["pca_components"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n4,5\n")
    proc = subprocess.run([sys.executable, "-m", "aecore.cli", "train", "--variant", "linear", "--data-file",
                           str(bad), "-k", "1", "--no-save"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bad.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_datasets_lists_registry_with_availability(capsys):
    code, out, _ = run_cli(capsys, "datasets", "--json")
    assert code == 0
    rows = {r["name"]: r for r in map(json.loads, out.strip().splitlines())}
    assert {"digits", "mnist", "fashion-mnist"} <= set(rows)
    assert rows["digits"]["available_offline"] is True


def test_train_help_lists_every_registered_variant(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in variant_names():
        assert f"  {name} " in out
