"""The Trainer: reproducibility, stopping, failure messages, snapshots and the logged terms."""
from __future__ import annotations

import math
import threading
import time
import types

import numpy as np
import pytest
import torch

from aecore import objectives
from aecore.config import ModelConfig, TrainConfig
from aecore.models import build_model
from aecore.registry import variant_names
from aecore.training import Failed, Finished, Progress, Snapshot, Trainer, TrainingFailed, fit, resolve_device

TIMING = {"seconds", "samples_per_second", "steady_samples_per_second", "elapsed", "eta"}
QUIET = dict(progress_every=1e9, snapshot_every=1e9)  # only the start/end snapshot and the final progress
EVERY_STEP = dict(progress_every=0.0, snapshot_every=1e9)


def _data(digits, n=256, scale=1.0, shift=0.0):
    """A small writable copy of digits (optionally rescaled), shaped like aecore.data.Dataset."""
    return types.SimpleNamespace(
        name="digits", x_train=np.ascontiguousarray(digits.x_train[:n] * scale + shift, dtype=np.float32),
        y_train=np.asarray(digits.y_train[:n]), x_test=np.array(digits.x_test[:100]),
        y_test=np.asarray(digits.y_test[:100]), shape=(8, 8))


def _events(mc, tc, data, stop=None):
    return list(Trainer(mc, tc, data, stop=stop).run())


def _without(d, keys):
    return {k: v for k, v in d.items() if k not in keys}


# --- reproducibility ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["denoising", "vae"])  # both draw random numbers while training
def test_same_seed_gives_identical_weights_and_metrics(variant, digits):
    mc = ModelConfig(variant=variant, code_size=8, hidden=(32,) if variant == "vae" else None)
    tc = TrainConfig(epochs=2, n_train=300, batch_size=50, seed=3, device="cpu", **EVERY_STEP)
    a, b = fit(mc, tc, digits), fit(mc, tc, digits)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert _without(a.metrics, TIMING) == _without(b.metrics, TIMING)
    assert len(a.history) == len(b.history) == 12  # one row per step: 2 epochs x 6 batches
    assert [_without(r, TIMING) for r in a.history] == [_without(r, TIMING) for r in b.history]

    c = fit(mc, tc.replace(seed=4), digits)
    assert not torch.equal(c.model.W, a.model.W)
    assert c.metrics["test_mse"] != a.metrics["test_mse"]


# --- stopping ----------------------------------------------------------------------------------------
def test_stop_flag_ends_training_within_one_step(digits):
    stop = threading.Event()
    seen = []

    def on_event(ev):
        seen.append(ev)
        if isinstance(ev, Progress):
            stop.set()

    tc = TrainConfig(epochs=100, batch_size=64, device="cpu", **EVERY_STEP)
    res = fit(ModelConfig(variant="sigmoid", code_size=4), tc, _data(digits), on_event=on_event, stop=stop)
    first = next(e for e in seen if isinstance(e, Progress))
    assert first.total_steps == 400
    assert res.stopped is True
    assert res.metrics["steps"] <= first.step + 1
    finished = seen[-1]
    assert isinstance(finished, Finished) and finished.stopped is True
    assert finished.metrics["steps"] == res.metrics["steps"]
    assert math.isfinite(finished.metrics["test_mse"])
    assert max(e.step for e in seen if isinstance(e, Progress)) == res.metrics["steps"]


def test_stop_set_before_the_run_takes_at_most_one_step(digits):
    stop = threading.Event()
    stop.set()
    events = _events(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=50, device="cpu", **QUIET),
                     _data(digits), stop=stop)
    fin = events[-1]
    assert isinstance(fin, Finished) and fin.stopped
    assert fin.metrics["steps"] <= 1


# --- failures name the term, the step and the cause --------------------------------------------------------
def test_diverging_run_fails_naming_the_step_and_term(digits):
    mc = ModelConfig(variant="linear", code_size=8)
    tc = TrainConfig(epochs=3, lr=9.0, optimizer="sgd", device="cpu", **EVERY_STEP)
    events = _events(mc, tc, _data(digits))
    last = events[-1]
    assert isinstance(last, Failed), last
    assert not any(isinstance(e, Finished) for e in events)
    assert last.step is not None and last.step >= 0
    assert last.reason.startswith(f"diverged at step {last.step} ")
    assert "lr=9" in last.reason
    with pytest.raises(TrainingFailed, match=r"diverged at step \d+ \(term 'recon'"):
        fit(mc, tc, _data(digits))


def test_non_finite_first_batch_fails_before_training(digits):
    events = _events(ModelConfig(variant="linear", code_size=4), TrainConfig(epochs=1, device="cpu", **QUIET),
                     _data(digits, scale=1e25))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "loss term 'recon' is not finite on the first batch" in events[0].reason


@pytest.mark.parametrize("scale, shift, span", [(2.0, 0.0, r"\[0, 2\]"), (1.0, -0.5, r"\[-0.5, 0.5\]")])
def test_cross_entropy_on_data_outside_unit_interval_fails_naming_the_range(digits, scale, shift, span):
    events = _events(ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=1, device="cpu", **QUIET),
                     _data(digits, scale=scale, shift=shift))
    assert len(events) == 1 and isinstance(events[0], Failed)
    with pytest.raises(TrainingFailed,
                       match=rf"loss='cross-entropy' needs inputs in \[0, 1\]; data 'digits' spans {span}\. "
                             r"Use loss='squared'"):
        fit(ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=1, device="cpu", **QUIET),
            _data(digits, scale=scale, shift=shift))


def test_squared_loss_accepts_data_outside_unit_interval(digits):
    res = fit(ModelConfig(variant="linear", code_size=4), TrainConfig(epochs=1, device="cpu", **QUIET),
              _data(digits, scale=2.0, shift=-1.0))
    assert math.isfinite(res.metrics["test_mse"])


def test_unlabelled_data_trains_and_snapshots_without_labels(digits):
    data = _data(digits)
    data.y_train = data.y_test = None
    events = _events(ModelConfig(variant="relu", code_size=4), TrainConfig(epochs=1, device="cpu", **QUIET), data)
    assert isinstance(events[-1], Finished)
    assert all(e.code_labels is None for e in events if isinstance(e, Snapshot))


# --- devices -----------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_auto_device_is_cpu_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_cuda_without_a_gpu_says_so(digits):
    with pytest.raises(ValueError, match=r"device='cuda' was asked for but no CUDA GPU is available; "
                                         r"use device='auto' or 'cpu'"):
        resolve_device("cuda")
    events = _events(ModelConfig(variant="tied", code_size=4), TrainConfig(epochs=1, device="cuda", **QUIET),
                     _data(digits))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "no CUDA GPU is available" in events[0].reason


# --- snapshots ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant, k, angles", [("linear", 5, True), ("tied", 5, True), ("sigmoid", 5, False),
                                                ("linear", 100, False), ("denoising", 5, False)])
def test_snapshots_carry_filters_and_angles(digits, variant, k, angles):
    data = _data(digits)
    events = _events(ModelConfig(variant=variant, code_size=k),
                     TrainConfig(epochs=2, device="cpu", progress_every=1e9, snapshot_every=0.0), data)
    snaps = [e for e in events if isinstance(e, Snapshot)]
    fin = events[-1]
    assert isinstance(fin, Finished)
    assert len(snaps) >= 3  # the start, during training, the end
    assert snaps[0].step == 0 and snaps[-1].step == fin.metrics["steps"]
    for s in snaps:
        assert s.W.shape == (k, 64)
        assert s.decoder_W.shape == (64, k)
        assert s.codes.shape == (100, k)
        np.testing.assert_array_equal(s.code_labels, data.y_test)
        np.testing.assert_array_equal(s.inputs, data.x_test[:16])
        assert s.recon.shape == (16, 64)
        if angles:
            assert s.principal_angles_deg.shape == (k,)
            assert np.all((s.principal_angles_deg >= 0) & (s.principal_angles_deg <= 90 + 1e-9))
        else:
            assert s.principal_angles_deg is None
        if variant == "denoising":
            assert s.corrupted.shape == (16, 64) and not np.array_equal(s.corrupted, s.inputs)
        else:
            assert s.corrupted is None
    if variant == "tied":
        np.testing.assert_array_equal(snaps[-1].decoder_W, snaps[-1].W.T)
    # the final snapshot shows the weights of the finished model
    np.testing.assert_array_equal(snaps[-1].W, fin.model.W.detach().numpy())
    if angles:
        assert fin.metrics["max_principal_angle_deg"] == pytest.approx(snaps[-1].principal_angles_deg.max(), abs=1e-6)
    else:
        assert "max_principal_angle_deg" not in fin.metrics


# --- the logged terms -------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", variant_names())
def test_progress_terms_are_the_models_loss_terms(variant, digits):
    mc = ModelConfig(variant=variant, code_size=4)
    weights = build_model(mc, 64).loss_weights()
    events = _events(mc, TrainConfig(epochs=1, batch_size=64, device="cpu", **EVERY_STEP), _data(digits))
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4]
    for p in progress:
        assert set(p.terms) == set(weights)
        assert p.loss == pytest.approx(sum(p.terms.values()), rel=1e-6)
        assert all(math.isfinite(v) for v in p.terms.values())
        assert p.epochs == 1 and p.total_steps == 4 and p.epoch == pytest.approx(p.step / 4)
    assert all(set(weights) <= set(row) for row in events[-1].history)


@pytest.mark.parametrize("variant, names", [("sparse", {"recon", "sparsity"}), ("vae", {"recon", "kl"}),
                                            ("contractive", {"recon", "contractive"}), ("linear", {"recon"})])
def test_known_term_names(variant, names):
    assert set(build_model(ModelConfig(variant=variant, code_size=3), 64).loss_weights()) == names


@pytest.mark.parametrize("variant, weight, term", [("sparse", dict(reg=0.05), "sparsity"),
                                                   ("contractive", dict(reg=0.2), "contractive"),
                                                   ("vae", dict(beta=0.5, hidden=(32,)), "kl")])
def test_logged_penalty_is_weight_times_the_unweighted_term(variant, weight, term, digits):
    """With one full batch, the first Progress reports the terms of the initial model on all data."""
    data = _data(digits, n=256)
    mc = ModelConfig(variant=variant, code_size=6, **weight)
    tc = TrainConfig(epochs=1, batch_size=256, seed=11, device="cpu", **EVERY_STEP)
    first = next(e for e in _events(mc, tc, data) if isinstance(e, Progress))
    assert first.step == 1

    model = build_model(mc, 64, generator=torch.Generator().manual_seed(tc.seed))  # the trainer's initial model
    x = torch.as_tensor(data.x_train)
    with torch.no_grad():
        if variant == "vae":
            mu, logvar = model.encode_dist(x)
            raw = objectives.gaussian_kl(mu, logvar)
        else:
            out = model(x)
            raw = (objectives.l1_sparsity(out.code) if variant == "sparse"
                   else objectives.contractive_penalty(model.W, out.pre, out.code, mc.activation))
    w = weight.get("reg", weight.get("beta"))
    assert first.terms[term] == pytest.approx(w * float(raw), rel=1e-5)
    assert first.terms[term] > 0

    # weight 0: the term is still logged, as 0, and training still works
    zero = {k: (0.0 if k in ("reg", "beta") else v) for k, v in weight.items()}
    first0 = next(e for e in _events(mc.replace(**zero), tc, data) if isinstance(e, Progress))
    assert first0.terms[term] == 0.0
    assert first0.terms["recon"] == pytest.approx(first.terms["recon"], rel=1e-6)  # same init, same batch


def test_min_snapshots_spreads_frames_over_a_fast_run(digits):
    from aecore.training import Snapshot, Trainer

    tc = TrainConfig(epochs=4, snapshot_every=1e9, batch_size=64)
    none = [e for e in Trainer(ModelConfig(variant="tied", code_size=3), tc, digits).run() if isinstance(e, Snapshot)]
    many = [e for e in Trainer(ModelConfig(variant="tied", code_size=3), tc, digits, min_snapshots=10).run()
            if isinstance(e, Snapshot)]
    assert len(none) == 2  # the first and the last
    steps = [s.step for s in many]
    assert 10 <= len(many) <= 13 and steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == 4 * 23  # 1437 examples / 64 = 23 steps per epoch


def _finished(trainer):
    (fin,) = [e for e in trainer.run() if isinstance(e, Finished)]
    return fin


class _SlowStart(Trainer):
    """Steps 1, 2 and 10 each end with a 0.3 s pause (the hook runs after every step)."""

    def _should_stop(self, step):
        if step < 3 or step == 10:
            time.sleep(0.3)
        return super()._should_stop(step)


def test_steady_rate_leaves_out_the_warm_up_steps(digits):
    mc, B = ModelConfig(variant="sigmoid", code_size=8), 50
    tc = TrainConfig(epochs=2, n_train=500, batch_size=B, device="cpu", **QUIET)  # 2 x 10 steps
    m = _finished(_SlowStart(mc, tc, digits)).metrics
    assert m["steps"] == 20 and m["steady_from_step"] == 3  # GRAPH_WARMUP
    window = (20 - 3) * B / m["steady_samples_per_second"]  # the seconds the steady rate was timed over
    assert 0.3 <= window <= m["seconds"] - 0.6  # the pauses after steps 1 and 2 lie before it, step 10's in it
    assert m["samples_per_second"] == pytest.approx(20 * B / m["seconds"])
    assert m["steady_samples_per_second"] > m["samples_per_second"]


def test_a_run_shorter_than_the_warm_up_reports_its_whole_rate_as_steady(digits):
    tc = TrainConfig(epochs=1, n_train=100, batch_size=50, device="cpu", **QUIET)  # 2 steps
    m = _finished(_SlowStart(ModelConfig(variant="sigmoid", code_size=8), tc, digits)).metrics
    assert m["steps"] == 2 and m["steady_from_step"] == 0
    assert m["steady_samples_per_second"] == m["samples_per_second"] == pytest.approx(100 / m["seconds"])


def test_eval_each_epoch_reports_held_out_loss(digits):
    from aecore.training import Evaluation, Finished, Trainer

    events = list(Trainer(ModelConfig(variant="vae", code_size=2, hidden=(32,)), TrainConfig(epochs=3), digits,
                          eval_each_epoch=True).run())
    evals = [e for e in events if isinstance(e, Evaluation)]
    assert [e.epoch for e in evals] == [1, 2, 3]
    assert set(evals[0].terms) == {"recon", "kl"}
    assert all(np.isfinite(e.neg_elbo) and e.neg_elbo > 0 for e in evals)
    fin = events[-1]
    assert isinstance(fin, Finished)
    # the last epoch's held-out -ELBO agrees with the final metric (both sample z; different draws)
    assert evals[-1].neg_elbo == pytest.approx(-fin.metrics["test_elbo"], rel=0.05)
    plain = list(Trainer(ModelConfig(variant="tied", code_size=3), TrainConfig(epochs=1), digits).run())
    assert not any(isinstance(e, Evaluation) for e in plain)


# --- fast_step: Adam.step's update without its Python bookkeeping ------------------------------------
def _adam_pair(weight_decay=0.0, **kw):
    """Two identical models, each with a fused Adam; their losses take the same batch."""
    from aecore.training import make_optimizer

    models = [build_model(ModelConfig(variant="sigmoid", code_size=6), 10, generator=torch.Generator().manual_seed(0))
              for _ in range(2)]
    opts = [make_optimizer(torch.optim.Adam, m.parameters(), lr=1e-2, weight_decay=weight_decay, **kw) for m in models]
    return models, opts


def _loss(model, x):
    return sum(model.loss_terms(x).values())


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_fast_step_updates_exactly_as_adam_step(weight_decay):
    from aecore.training import fast_step

    (a, b), (opt_a, opt_b) = _adam_pair(weight_decay)
    step_b = fast_step(opt_b)
    assert step_b != opt_b.step  # the fast path is taken for a fused CPU Adam
    x = torch.rand(200, 10, generator=torch.Generator().manual_seed(1))
    for i in range(12):
        if i == 6:  # a schedule changes the learning rate between steps
            for opt in (opt_a, opt_b):
                opt.param_groups[0]["lr"] = 3e-3
        xb = x[i * 16:(i + 1) * 16]
        for model, opt, step in ((a, opt_a, opt_a.step), (b, opt_b, step_b)):
            opt.zero_grad(set_to_none=True)
            _loss(model, xb).backward()
            step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)  # bit for bit, not approximately
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    for k in sa:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    assert float(sb[0]["step"]) == 12


def test_fast_step_hands_what_it_cannot_do_to_adam_step():
    from aecore.training import fast_step

    # not a fused plain Adam: opt.step itself
    for opt in (torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1),
                torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1, fused=True, amsgrad=True),
                torch.optim.Adam([torch.nn.Parameter(torch.ones(2))], lr=0.1, foreach=True)):
        assert fast_step(opt) == opt.step
    (a, b), (opt_a, opt_b) = _adam_pair()
    step_b = fast_step(opt_b)
    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(2))
    calls = []
    opt_b.register_step_post_hook(lambda *_: calls.append(1))
    for model, opt, step in ((a, opt_a, opt_a.step), (b, opt_b, step_b)):
        opt.zero_grad(set_to_none=True)
        _loss(model, x).backward()
        step()
    assert calls == [1]  # a registered hook runs: the step went through opt.step
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_fast_step_falls_back_when_a_parameter_has_no_gradient():
    from aecore.training import fast_step

    w, v = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    w2, v2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt, opt2 = (torch.optim.Adam(ps, lr=0.1, fused=True) for ps in ([w, v], [w2, v2]))
    step2 = fast_step(opt2)
    for _ in range(3):
        for (p, q), o, s in (((w, v), opt, opt.step), ((w2, v2), opt2, step2)):
            o.zero_grad(set_to_none=True)
            (p * torch.arange(3.0)).sum().backward()  # q gets no gradient: Adam leaves it and its state alone
            s()
    assert torch.equal(w, w2) and torch.equal(v2, torch.ones(3)) and v2 not in opt2.state
