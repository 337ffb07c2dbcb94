"""The CLI contract that benchmarks and pages rely on."""
import json
import subprocess
import sys

import numpy as np
import pytest

from aecore.cli import main
from aecore.registry import variant_names

REQUIRED = {"variant", "dataset", "code_size", "epochs", "device", "seconds", "samples_per_second",
            "steady_samples_per_second", "steady_from_step",
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


def _train_until_first_progress(tmp_path, *extra):
    """A long `aecore train` in a subprocess, returned once it has printed its first progress line."""
    import os
    env = {**os.environ, "AECORE_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aecore.cli", "train", "--variant", "sigmoid", "-k", "8",
                             "--dataset", "digits", "--epochs", "100000", "--json", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert json.loads(first)["event"] == "progress", first + proc.stderr.read()
    return proc


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_and_saves_the_model_trained_so_far(tmp_path, capsys, signame):
    import signal

    from aecore.runs import RunStore

    proc = _train_until_first_progress(tmp_path)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    # exit status 128 + the signal, as a shell reports a command the signal ended
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert f"{signame}: stopping training; the model trained so far will be evaluated and saved" in err
    assert "Traceback" not in err
    final = last_json(out)
    assert final["event"] == "finished" and final["stopped"] is True
    assert 0 < final["epochs"] < 100000 and REQUIRED <= set(final)
    assert np.isfinite(final["test_sse"])
    rows = RunStore(tmp_path / "runs").list()
    assert [(r["id"], r["status"]) for r in rows] == [(final["run_dir"].rsplit("/", 1)[1], "stopped")]
    code, shown, err = run_cli(capsys, "show", final["run_dir"], "--json")
    assert code == 0, err
    assert json.loads(shown)["metrics"]["test_sse"] == pytest.approx(final["test_sse"])


def test_a_second_signal_aborts_and_marks_the_run_interrupted(capfd, monkeypatch, tmp_path):
    """The first Ctrl-C arrives during training; the second while the stopped model is being
    evaluated, before it is saved: the command ends at once with 130 and the store says why."""
    import os
    import signal

    from aecore import training
    from aecore.runs import RunStore, runs_root

    real_should_stop, real_evaluate = training.Trainer._should_stop, training.evaluate

    def should_stop(self, step):
        if step == 30:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before os.kill returns here
        return real_should_stop(self, step)

    def evaluate(*a, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(training.Trainer, "_should_stop", should_stop)
    monkeypatch.setattr(training, "evaluate", evaluate)
    before = signal.getsignal(signal.SIGINT)
    code, out, err = run_cli(capfd, "train", "--variant", "sigmoid", "-k", "4", "--dataset", "digits",
                             "--epochs", "1000", "--json")  # capfd: the handler writes to file descriptor 2
    assert code == 130, err
    assert "SIGINT: stopping training" in err and "aecore: interrupted" in err
    assert '"event": "finished"' not in out
    rows = RunStore(runs_root()).list()
    assert [(r["status"], r["reason"]) for r in rows] == [("interrupted", "interrupted (Ctrl-C) before the run was saved")]
    assert signal.getsignal(signal.SIGINT) is before  # the CLI's handlers are gone once it returns


def test_stop_on_signal_outside_the_main_thread_leaves_the_handlers_alone():
    import signal
    import threading

    from aecore.cli import StopOnSignal

    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def enter():
        with StopOnSignal(threading.Event()):
            seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=enter)
    t.start()
    t.join()
    assert seen == [before]
