"""The Trainer's CUDA-graph path: the step captured once and replayed.

A CUDA graph cannot be captured without a GPU, so most tests run the same path on the CPU with
``capture`` emulated: "capturing" keeps the step function without running it and "replaying"
calls it. Everything else is the product code: the warm-up steps, the static batch gathered by
``index_select(out=)``, the device-side step counter and learning rate, the in-place loss
bookkeeping, the short last batch stepped eagerly between replays. The GPU test at the end
captures for real.
"""
from __future__ import annotations

import threading
import time
import types

import numpy as np
import pytest
import torch

from aecore import training
from aecore.config import ModelConfig, TrainConfig
from aecore.training import Failed, Finished, Progress, Trainer

EVERY_STEP = dict(progress_every=0.0, snapshot_every=1e9)


def _data(digits, n=300):
    return types.SimpleNamespace(
        name="digits", x_train=np.array(digits.x_train[:n], dtype=np.float32),  # a writable copy
        y_train=np.asarray(digits.y_train[:n]), x_test=np.array(digits.x_test[:100]),
        y_test=np.asarray(digits.y_test[:100]), shape=(8, 8), kind="image")


@pytest.fixture
def emulated(monkeypatch):
    """The graph path on the CPU; returns the list of step functions 'captured'."""
    captured = []

    def capture(fn, device):
        captured.append(fn)
        return fn

    monkeypatch.setattr(training, "GRAPH_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(training, "_capture", capture)
    return captured


def _run(mc, tc, data, **kw):
    trainer = Trainer(mc, tc, data, **kw)
    return trainer, list(trainer.run())


def _finished(events) -> Finished:
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


MODELS = {
    "sigmoid": ModelConfig(variant="sigmoid", code_size=16),
    "sparse": ModelConfig(variant="sparse", code_size=16, reg=0.01),
    "contractive": ModelConfig(variant="contractive", code_size=16, reg=0.1),
    "deep": ModelConfig(variant="deep", code_size=4, hidden=(32, 16)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_replayed_step_trains_exactly_as_the_eager_step(name, emulated, digits):
    # 300 examples at batch 64: four full batches and a short one of 44 in every epoch, so replays
    # and eager steps alternate; cosine lr moves the device-side learning rate every step
    mc = MODELS[name]
    tc = TrainConfig(epochs=4, batch_size=64, lr=0.05, lr_schedule="cosine", seed=2, device="cpu", **EVERY_STEP)
    data = _data(digits)
    g_trainer, g = _run(mc, tc, data)
    e_trainer, e = _run(mc, tc, data, cuda_graph=False)
    gf, ef = _finished(g), _finished(e)
    assert len(emulated) == 1  # captured once, after GRAPH_WARMUP eager steps
    assert gf.metrics["cuda_graph"] is True and g_trainer.graph_note == ""
    assert ef.metrics["cuda_graph"] is False and "turned off" in e_trainer.graph_note
    assert gf.metrics["steps"] == ef.metrics["steps"] == 20
    gh, eh = gf.history, ef.history
    assert [r["step"] for r in gh] == [r["step"] for r in eh] == list(range(1, 21))
    for a, b in zip(gh, eh):  # every step's logged terms: the bookkeeping runs inside the graph
        for k in set(a) - {"step", "epoch", "elapsed", "samples_per_second"}:  # the loss and its terms
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), (a["step"], k)
    for (k, p), q in zip(gf.model.state_dict().items(), ef.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=k)
    assert gf.metrics["test_mse"] == pytest.approx(ef.metrics["test_mse"], rel=1e-5)
    # and training did something: the last epoch's loss is below the first's
    first, last = (np.mean([r["loss"] for r in gh[i:i + 5]]) for i in (0, 15))
    assert last < 0.97 * first, (first, last)


def test_without_emulation_a_cpu_run_is_eager_and_says_why(digits):
    trainer, events = _run(MODELS["sigmoid"], TrainConfig(epochs=1, batch_size=64, device="cpu", **EVERY_STEP),
                           _data(digits))
    assert _finished(events).metrics["cuda_graph"] is False
    assert trainer.graph_note == "CUDA graphs are for CUDA GPUs; this run is on cpu"


@pytest.mark.parametrize("mc, tc_kw, why", [
    (ModelConfig(variant="denoising", code_size=8), {}, "draws random numbers"),
    (ModelConfig(variant="vae", code_size=4, hidden=(32,)), {}, "draws random numbers"),
    (ModelConfig(variant="sigmoid", code_size=8), dict(augment_shift=1), "draws random numbers"),
    (ModelConfig(variant="sigmoid", code_size=8), dict(optimizer="sgd"), "optimizer 'sgd'"),
    (ModelConfig(variant="sigmoid", code_size=8), dict(precision="bfloat16"), "precision 'bfloat16'"),
])
def test_steps_a_graph_cannot_replay_stay_eager_and_say_why(mc, tc_kw, why, emulated, digits):
    tc = TrainConfig(epochs=2, batch_size=64, device="cpu", **EVERY_STEP, **tc_kw)
    trainer, events = _run(mc, tc, _data(digits))
    assert _finished(events).metrics["cuda_graph"] is False
    assert why in trainer.graph_note
    assert emulated == []


def test_environment_switch_turns_graphs_off_and_a_bad_value_is_named(emulated, monkeypatch, digits):
    tc = TrainConfig(epochs=1, batch_size=64, device="cpu", **EVERY_STEP)
    monkeypatch.setenv("AECORE_CUDA_GRAPH", "0")
    trainer, events = _run(MODELS["sigmoid"], tc, _data(digits))
    assert _finished(events).metrics["cuda_graph"] is False and "AECORE_CUDA_GRAPH=0" in trainer.graph_note
    # the argument wins over the environment
    assert _finished(_run(MODELS["sigmoid"], tc, _data(digits), cuda_graph=True)[1]).metrics["cuda_graph"] is True
    monkeypatch.setenv("AECORE_CUDA_GRAPH", "maybe")
    last = _run(MODELS["sigmoid"], tc, _data(digits))[1][-1]
    assert isinstance(last, Failed)
    assert "AECORE_CUDA_GRAPH='maybe' must be 1" in last.reason
    monkeypatch.setattr(training, "GRAPH_DEVICES", ("cuda",))  # a plain CPU run is told too
    last = _run(MODELS["sigmoid"], tc, _data(digits))[1][-1]
    assert isinstance(last, Failed) and "AECORE_CUDA_GRAPH='maybe'" in last.reason


def test_a_failed_capture_warns_and_trains_eagerly_to_the_same_result(monkeypatch, digits):
    def cannot(fn, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(training, "GRAPH_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(training, "_capture", cannot)
    tc = TrainConfig(epochs=3, batch_size=64, lr_schedule="cosine", device="cpu", **EVERY_STEP)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        trainer, events = _run(MODELS["sigmoid"], tc, _data(digits))
    fin = _finished(events)
    assert fin.metrics["cuda_graph"] is False
    assert trainer.graph_note.startswith("capture failed (RuntimeError: operation not permitted")
    eager = _finished(_run(MODELS["sigmoid"], tc, _data(digits), cuda_graph=False)[1])
    assert fin.metrics["steps"] == eager.metrics["steps"] == 15
    torch.testing.assert_close(fin.model.W, eager.model.W, rtol=1e-5, atol=1e-6)


def test_a_non_finite_step_inside_the_graph_is_named_with_its_step(emulated, digits):
    # one NaN example, placed where the seed's first permutation reaches it at step 9 (a replay)
    B, seed = 16, 5
    data = _data(digits, n=256)
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(seed))
    j = next(j for j in range(9 * B, 10 * B) if perm[j] >= B)  # not in the unshuffled first-batch check
    data.x_train[int(perm[j])] = np.nan
    # output_bias="init": the data's mean (the default start) would carry the NaN into step 0
    tc = TrainConfig(epochs=2, batch_size=B, seed=seed, device="cpu", output_bias="init", **EVERY_STEP)
    mc = ModelConfig(variant="sigmoid", code_size=8, loss="squared")
    graphed = _run(mc, tc, data)[1]
    eager = _run(mc, tc, data, cuda_graph=False)[1]
    assert len(emulated) == 1
    for events in (graphed, eager):
        last = events[-1]
        assert isinstance(last, Failed), last
        assert last.step == 9
        assert last.reason.startswith("diverged at step 9 (term 'recon' is not finite)")


def test_stop_ends_a_replaying_run_within_one_step(emulated, digits):
    stop = threading.Event()
    seen = []
    trainer = Trainer(MODELS["sigmoid"], TrainConfig(epochs=100, batch_size=64, device="cpu", **EVERY_STEP),
                      _data(digits), stop=stop)
    for ev in trainer.run():
        seen.append(ev)
        if isinstance(ev, Progress) and ev.step == 7:  # past the capture after step 3
            stop.set()
    fin = _finished(seen)
    assert fin.stopped and fin.metrics["cuda_graph"] is True
    assert fin.metrics["steps"] == 8
    assert len(emulated) == 1


def test_the_steady_rate_starts_after_the_capture(monkeypatch, digits):
    # 300 examples at batch 128: full, full, short (44) in each epoch, so the third full batch, and
    # the capture after it, come at step 4; the capture is made to take 0.4 s
    def slow_capture(fn, device):
        time.sleep(0.4)
        return fn

    monkeypatch.setattr(training, "GRAPH_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(training, "_capture", slow_capture)
    tc = TrainConfig(epochs=4, batch_size=128, device="cpu", **EVERY_STEP)
    m = _finished(_run(MODELS["sigmoid"], tc, _data(digits))[1]).metrics
    assert m["cuda_graph"] is True and m["steps"] == 12 and m["steady_from_step"] == 4
    window = (2 * 128 + 44 + 2 * 128 + 44 + 128 + 44) / m["steady_samples_per_second"]  # steps 5-12, as counted
    assert window <= m["seconds"] - 0.4  # the capture lies before it
    assert m["steady_samples_per_second"] > m["samples_per_second"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the real capture and replay")
@pytest.mark.parametrize("name", ["sigmoid", "deep"])
def test_on_a_gpu_the_captured_step_trains_as_the_eager_step(name):
    rng = np.random.default_rng(0)
    x = rng.random((1000, 64), dtype=np.float32)
    data = types.SimpleNamespace(name="random", x_train=x[:900], y_train=None, x_test=x[900:], y_test=None,
                                 shape=(8, 8), kind="image")
    torch.backends.cuda.matmul.allow_tf32 = False
    tc = TrainConfig(epochs=3, batch_size=128, lr=0.01, lr_schedule="cosine", device="cuda", **EVERY_STEP)
    g_trainer, g = _run(MODELS[name], tc, data)
    e = _run(MODELS[name], tc, data, cuda_graph=False)[1]
    gf, ef = _finished(g), _finished(e)
    assert gf.metrics["cuda_graph"] is True, g_trainer.graph_note
    assert ef.metrics["cuda_graph"] is False
    assert gf.metrics["steady_from_step"] == ef.metrics["steady_from_step"] == training.GRAPH_WARMUP
    for a, b in zip(gf.history, ef.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
    for p, q in zip(gf.model.parameters(), ef.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
