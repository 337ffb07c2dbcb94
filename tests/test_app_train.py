"""AppTest of the entry point, the shared sidebar and the Train page.

AppTest does not fire ``run_every`` fragments on a timer, so a test that waits for a job
calls ``at.run()`` in a loop. ``tests/conftest.py`` points AECORE_RUNS / AECORE_CACHE at the
test's tmp folder (the fixture below does it again, explicitly), so nothing lands in ~/.cache.
"""
from __future__ import annotations

import time

import pytest
from apptest import figure


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def wait_for_job(at, timeout: float = 40.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        job = at.session_state["job"]
        if job.done:
            return at.run()  # the full run after the end draws the summary
        time.sleep(0.2)
    raise AssertionError(f"job did not finish within {timeout} s")


def test_renders_on_digits_without_exception(at):
    at.run()
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "Train"
    assert [b.label for b in at.main.button] == ["Train", "Stop"]
    assert at.button(key="train_stop").disabled
    assert "Press **Train**" in texts(at)
    mc, tc = at.session_state["model_cfg"], at.session_state["train_cfg"]
    assert tc.dataset == "digits" and mc.variant == "sigmoid"
    # the settings are mirrored into the URL
    assert at.query_params["variant"] == "sigmoid" and at.query_params["K"] == str(mc.code_size)


def test_controls_change_the_session_config(at):
    at.run()
    at.number_input(key="sb_code_size").set_value(5).run()
    assert at.session_state["model_cfg"].code_size == 5
    assert at.query_params["K"] == "5"
    at.selectbox(key="sb_variant").set_value("sparse").run()
    mc = at.session_state["model_cfg"]
    assert mc.variant == "sparse" and mc.reg == pytest.approx(0.01) and mc.activation == "relu"
    at.number_input(key="sb_reg").set_value(0.2).run()
    assert at.session_state["model_cfg"].reg == pytest.approx(0.2)
    assert at.query_params["reg"] == "0.2"
    at.number_input(key="sb_lr").set_value(0.003).run()
    assert at.session_state["train_cfg"].lr == pytest.approx(0.003)
    # λ only exists for variants with a regularizer: the widget and the URL parameter go away
    at.selectbox(key="sb_variant").set_value("sigmoid").run()
    assert "reg" not in at.query_params
    assert not [w for w in at.number_input if w.key == "sb_reg"]


def test_bad_hidden_sizes_and_config_errors_show_messages_not_tracebacks(at):
    at.run()
    at.selectbox(key="sb_variant").set_value("deep").run()
    assert at.session_state["model_cfg"].hidden == (256, 128)
    at.text_input(key="sb_hidden").input("256,abc").run()
    assert not at.exception
    assert any("Hidden layer sizes" in e.value and "abc" in e.value for e in at.error)
    assert at.session_state["model_cfg"] is None
    assert at.button(key="train_start").disabled
    at.text_input(key="sb_hidden").input("32").run()
    assert at.session_state["model_cfg"].hidden == (32,)
    # a ConfigError (cross-entropy needs a sigmoid output) is shown with its message
    at.selectbox(key="sb_variant").set_value("linear").run()
    at.selectbox(key="sb_loss").set_value("cross-entropy").run()
    assert not at.exception
    assert any("cross-entropy" in e.value and "sigmoid" in e.value for e in at.error)


def test_query_params_are_read_and_bad_ones_dropped(at):
    at.query_params.update({"variant": "sparse", "K": "7", "reg": "0.05", "epochs": "4", "lr": "abc",
                            "dataset": "nope"})
    at.run()
    assert not at.exception
    mc, tc = at.session_state["model_cfg"], at.session_state["train_cfg"]
    assert (mc.variant, mc.code_size, mc.reg, tc.epochs) == ("sparse", 7, pytest.approx(0.05), 4)
    assert tc.lr == pytest.approx(1e-2) and tc.dataset == "digits"  # defaults replace the bad values
    warnings = " ".join(w.value for w in at.warning)
    assert "lr='abc'" in warnings and "dataset='nope'" in warnings
    assert at.query_params["lr"] == "0.01" and at.query_params["reg"] == "0.05"


def test_short_training_run_finishes_with_metrics_and_live_figures(at):
    at.query_params.update({"variant": "sparse", "K": "8", "epochs": "3"})
    at.run()
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error
    wait_for_job(at)
    job = at.session_state["job"]
    assert job.status == "finished", job.error
    m = job.metrics
    text = texts(at)
    assert f"{m['test_sse']:.4g}" in text and f"{m['pca_sse']:.4g}" in text and "PCA" in text
    assert f"saved as run `{job.run_id}`".lower() in text.lower()
    loss = figure(at, "Training loss")
    names = {t["name"] for t in loss["data"]}
    assert names == {"recon", "sparsity", "total"}
    assert loss["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert "per example" in loss["layout"]["yaxis"]["title"]["text"]
    figure(at, "Filters: rows of W")
    recon = figure(at, "Reconstructions")
    assert recon["layout"]["yaxis"]["ticktext"] == ["input", "output"]
    figure(at, "Test error vs PCA")
    # the button is back for the next run, Stop is off
    assert not at.button(key="train_start").disabled and at.button(key="train_stop").disabled


def test_a_finished_jobs_snapshots_are_freed_when_the_session_trains_the_next(at):
    """The replay panel shows the current job's snapshots; once the session has trained another job,
    nothing may keep the earlier one's (~30 MB on MNIST: a class server ran out of memory job by job
    while a slider's format_func, kept in the session state, held them)."""
    import gc
    import weakref

    at.query_params.update({"variant": "sigmoid", "K": "8", "epochs": "2"})
    at.run()
    at.button(key="train_start").click().run()
    wait_for_job(at)
    first = at.session_state["job"]
    assert first.status == "finished" and len(first.snapshots) >= 2
    at.run()  # the page with the first job's replay panel
    assert at.select_slider(key=f"replay_{first.id}").value == len(first.snapshots) - 1
    gone = [weakref.ref(s) for s in first.snapshots]
    model = weakref.ref(first.model)  # (the export button's deferred zip holds it while shown)
    del first
    at.button(key="train_start").click().run()
    wait_for_job(at)
    at.run()
    second = at.session_state["job"]
    assert second.status == "finished" and at.select_slider(key=f"replay_{second.id}")
    gc.collect()
    alive = sum(r() is not None for r in gone)
    assert alive == 0, f"{alive} of the first job's {len(gone)} snapshots are still referenced"
    assert model() is None, "the first job's model is still referenced"


def test_noisy_variant_shows_the_corrupted_row(at):
    at.query_params.update({"variant": "denoising", "K": "8", "epochs": "1"})
    at.run()
    at.button(key="train_start").click().run()
    wait_for_job(at)
    assert at.session_state["job"].status == "finished"
    assert figure(at, "Reconstructions")["layout"]["yaxis"]["ticktext"] == ["input", "corrupted", "output"]


def test_stop_ends_the_run_within_a_second(at):
    at.query_params.update({"variant": "linear", "K": "4", "epochs": "5000"})
    at.run()
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    deadline = time.time() + 20
    while job.progress is None and time.time() < deadline:
        time.sleep(0.1)
    assert job.status == "running"
    at.run()
    assert not at.button(key="train_stop").disabled
    t0 = time.time()
    at.button(key="train_stop").click().run()
    while job.ended is None and time.time() - t0 < 10:
        time.sleep(0.05)
    # the trainer stops within one step; the rest is the final evaluation of the stopped model
    assert job.status == "stopped", job.status
    assert job.ended - t0 < 3.0
    assert job.progress.epoch < 5000
    at.run()
    assert "Stopped early" in texts(at)


def test_while_it_trains_the_loss_curve_is_a_light_svg_and_after_it_the_plotly_figure(at):
    """Plotly redraws its whole figure on each live refresh (the browser's CPU, taken from training);
    the live view draws an SVG instead, and the interactive figure comes back when the run ends."""
    import xml.etree.ElementTree as ET

    at.query_params.update({"variant": "sparse", "K": "4", "epochs": "5000"})
    at.run()
    at.button(key="train_start").click().run()
    job = at.session_state["job"]
    deadline = time.time() + 20
    while len(job.history) < 3 and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    svgs = [m.value for m in at.markdown if m.value.startswith("<svg")]
    assert len(svgs) == 1, [m.value[:60] for m in at.markdown]
    root = ET.fromstring(svgs[0])
    assert root.get("data-title") == "Training loss by term" and root.get("data-traces") == "3"
    assert int(root.get("data-points")) >= 3
    assert not any("Training loss" in t for t in [c.proto.spec for c in at.get("plotly_chart")])
    at.toggle(key="train_log_y").set_value(True).run()
    log_svg = next(m.value for m in at.markdown if m.value.startswith("<svg"))
    assert ", log scale<" in log_svg  # the y axis title says so
    at.button(key="train_stop").click().run()
    while job.ended is None and time.time() < deadline + 10:
        time.sleep(0.05)
    at.run()
    assert not any(m.value.startswith("<svg") for m in at.markdown)
    assert {t["name"] for t in figure(at, "Training loss")["data"]} == {"recon", "sparsity", "total"}


def test_failure_is_shown_with_its_reason(at):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA to make device='cuda' fail")
    at.query_params.update({"epochs": "1", "device": "cuda"})
    at.run()
    at.button(key="train_start").click().run()
    wait_for_job(at)
    assert at.session_state["job"].status == "failed"
    assert not at.exception
    assert any("Training failed" in e.value and "cuda" in e.value for e in at.error)


def test_divergence_hints_at_a_lower_learning_rate(at):
    from aecore.config import ModelConfig, TrainConfig
    from dashboard.jobs import JobRecord

    job = JobRecord(99, ModelConfig(), TrainConfig(lr=5.0), {"name": "digits", "shape": [8, 8]}, status="failed",
                    error="diverged at step 12 (term 'recon' is not finite); try a lower learning rate than lr=5")
    at.session_state["job"] = job
    at.run()
    assert not at.exception
    assert any("diverged" in e.value for e in at.error)
    assert any("Lower the learning rate" in i.value for i in at.info)


# --- JobManager fixes (dashboard/jobs.py) ------------------------------------------------------
def _wait(job, timeout=10.0):
    deadline = time.time() + timeout
    while job.ended is None and time.time() < deadline:
        time.sleep(0.02)
    assert job.ended is not None


def test_job_whose_trainer_ends_without_a_result_is_failed_not_running_forever(monkeypatch):
    import dashboard.jobs as jobs

    class Silent:
        def __init__(self, *args, **kwargs):
            pass

        def run(self):
            return iter(())

    monkeypatch.setattr(jobs, "Trainer", Silent)
    job = jobs.JobManager(max_jobs=1, runner="thread").submit(None, None, None)
    _wait(job)
    assert job.status == "failed" and job.done and "without a result" in job.error


def test_a_broken_store_does_not_hide_why_training_failed(monkeypatch):
    import dashboard.jobs as jobs
    from aecore.training import Failed

    class Failing:
        def __init__(self, *args, **kwargs):
            pass

        def run(self):
            yield Failed("diverged at step 3")

    class BrokenStore:
        def start(self, *args, **kwargs):
            return "run-1"

        def fail(self, *args):
            raise OSError("database is locked")

    monkeypatch.setattr(jobs, "Trainer", Failing)
    job = jobs.JobManager(max_jobs=1, store=BrokenStore(), runner="thread").submit(None, None, None)
    _wait(job)
    assert job.status == "failed" and job.error == "diverged at step 3"
    assert "database is locked" in job.save_error
    assert len({job, job}) == 1  # jobs are hashable, compared by identity
