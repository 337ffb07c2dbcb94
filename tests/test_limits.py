"""Per-session resource caps (dashboard.limits): defaults, settings, refusals, and the sidebar."""
from __future__ import annotations

import time

import pytest

from aecore.config import ModelConfig, TrainConfig
from dashboard import limits
from dashboard.jobs import JobManager, LimitError
from dashboard.limits import Limits

DIGITS_STEPS_PER_EPOCH = 23  # ceil(1437 / 64)


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    for var in limits.ENV.values():
        monkeypatch.delenv(var, raising=False)


def _wait(jobs, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline and not all(j.done for j in jobs):
        time.sleep(0.05)
    assert all(j.done for j in jobs), [j.status for j in jobs]


# --- the settings -----------------------------------------------------------------------------
def test_defaults_are_the_classroom_caps():
    lim = limits.current()
    assert lim == Limits(code_size=4096, epochs=10_000, steps=250_000, train_examples=60_000, params=10_000_000,
                         jobs_per_session=10)
    # tighter than the library's absolute caps, which stay as they are
    from aecore.config import MAX_CODE_SIZE, MAX_EPOCHS
    assert lim.code_size < MAX_CODE_SIZE and lim.epochs < MAX_EPOCHS


def test_every_cap_is_a_setting(monkeypatch):
    for i, var in enumerate(limits.ENV.values()):
        monkeypatch.setenv(var, str(100 + i))
    lim = limits.current()
    assert [getattr(lim, f) for f in limits.ENV] == [100 + i for i in range(len(limits.ENV))]


@pytest.mark.parametrize("raw", ["lots", "0", "-3", "1.5"])
def test_a_bad_setting_is_an_error_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("AECORE_MAX_CODE_SIZE", raw)
    with pytest.raises(ValueError, match=f"AECORE_MAX_CODE_SIZE='{raw}' must be a whole number >= 1"):
        limits.current()


# --- the checks -------------------------------------------------------------------------------
def test_param_count_matches_the_real_model():
    from aecore.models import build_model

    for mc in (ModelConfig(variant="sigmoid", code_size=16), ModelConfig(variant="tied", code_size=16),
               ModelConfig(variant="deep", code_size=8, hidden=(32,)), ModelConfig(variant="vae", code_size=2)):
        real = sum(p.numel() for p in build_model(mc, 64).parameters())
        assert limits.param_count(mc, 64) == real, mc.variant
    # untied sigmoid AE: W (16x64) + b (16) + W* (64x16) + c (64)
    assert limits.param_count(ModelConfig(variant="sigmoid", code_size=16), 64) == 2 * 16 * 64 + 16 + 64


def test_within_the_caps_nothing_is_raised():
    limits.check_job(ModelConfig(code_size=4096), TrainConfig(epochs=10_000), n_train=1437, input_dim=64)
    limits.check_job(ModelConfig(code_size=4096), TrainConfig(epochs=200), n_train=60_000, input_dim=784)


@pytest.mark.parametrize("mc, tc, n, d, message", [
    (ModelConfig(code_size=5000), TrainConfig(epochs=1), 100, 64,
     r"code size K=5,000 is above this server's limit of 4,096 per job; choose a smaller K "
     r"\(the lecturer can raise it with AECORE_MAX_CODE_SIZE\)"),
    (ModelConfig(code_size=4), TrainConfig(epochs=20_000), 100, 64,
     r"epochs=20,000 is above this server's limit of 10,000 per job; train for fewer epochs .*AECORE_MAX_EPOCHS"),
    (ModelConfig(code_size=4), TrainConfig(epochs=1, dataset="mnist"), 70_000, 784,
     r"training examples of 'mnist'=70,000 is above this server's limit of 60,000 .*AECORE_MAX_TRAIN_EXAMPLES"),
    (ModelConfig(code_size=4), TrainConfig(epochs=300), 60_000, 784,
     r"training steps \(300 epochs x 938 batches of 64\)=281,400 is above this server's limit of 250,000 per job; "
     r"train for fewer epochs or with a larger batch size .*AECORE_MAX_STEPS"),
    (ModelConfig(variant="deep", code_size=64, hidden=(4096, 2048)), TrainConfig(epochs=1), 100, 784,
     r"model parameters \(deep, K=64, 784 inputs\)=.* is above this server's limit of 10,000,000 .*AECORE_MAX_PARAMS"),
])
def test_a_job_beyond_a_cap_is_refused_naming_it(mc, tc, n, d, message):
    with pytest.raises(LimitError, match=message):
        limits.check_job(mc, tc, n_train=n, input_dim=d)


def test_raised_settings_let_the_job_through(monkeypatch):
    mc, tc = ModelConfig(code_size=5000), TrainConfig(epochs=1)
    with pytest.raises(LimitError):
        limits.check_job(mc, tc, 100, 64)
    monkeypatch.setenv("AECORE_MAX_CODE_SIZE", "8192")
    limits.check_job(mc, tc, 100, 64)


# --- JobManager.submit ------------------------------------------------------------------------
def test_submit_refuses_a_sessions_job_beyond_a_cap_before_queueing_it(digits):
    mgr = JobManager(max_jobs=1, runner="thread")
    with pytest.raises(LimitError, match="code size K=5,000 .*AECORE_MAX_CODE_SIZE"):
        mgr.submit(ModelConfig(code_size=5000), TrainConfig(epochs=1), digits, save=False, owner="s1")
    with pytest.raises(LimitError, match=r"training steps \(10000 epochs x 45 batches of 32\)=450,000 .*AECORE_MAX_STEPS"):
        mgr.submit(ModelConfig(code_size=4), TrainConfig(epochs=10_000, batch_size=32), digits, save=False, owner="s1")
    assert mgr.jobs("s1", active=False) == [] and mgr.running == 0 and not mgr._waiting


def test_jobs_outside_a_session_are_not_capped(digits):
    # the CLI, scripts and tests keep the library's own caps only
    mgr = JobManager(max_jobs=1, runner="thread")
    job = mgr.submit(ModelConfig(code_size=5000), TrainConfig(epochs=1), digits, save=False)
    assert job.owner is None
    job.stop()
    _wait([job])


def test_a_session_may_have_only_so_many_jobs_at_once(digits, monkeypatch):
    monkeypatch.setenv("AECORE_MAX_JOBS_PER_SESSION", "2")
    mgr = JobManager(max_jobs=1, runner="thread")
    long = TrainConfig(epochs=5000)
    a1 = mgr.submit(ModelConfig(code_size=4), long, digits, save=False, owner="a")
    a2 = mgr.submit(ModelConfig(code_size=5), long, digits, save=False, owner="a")
    with pytest.raises(LimitError, match=r"this session already has 2 job\(s\) training or queued, the most one "
                                         r"session may have at once \(2\); wait for one to end or stop one "
                                         r"\(the lecturer can raise it with AECORE_MAX_JOBS_PER_SESSION\)"):
        mgr.submit(ModelConfig(code_size=6), long, digits, save=False, owner="a")
    b1 = mgr.submit(ModelConfig(code_size=7), TrainConfig(epochs=1), digits, save=False, owner="b")  # others may
    assert mgr.jobs("a") == [a1, a2] and mgr.jobs("b") == [b1]
    assert all(j.owner == "a" for j in (a1, a2)) and b1.owner == "b"
    a2.stop()  # a stopped job frees its place
    _wait([a2])
    a3 = mgr.submit(ModelConfig(code_size=6), TrainConfig(epochs=1), digits, save=False, owner="a")
    assert mgr.jobs("a") == [a1, a3]
    a1.stop()
    _wait([a1, a3, b1])
    assert (a3.status, b1.status) == ("finished", "finished")
    assert mgr.jobs("a") == [] and mgr.jobs("a", active=False) == [a1, a2, a3]


# --- the sidebar (AppTest) --------------------------------------------------------------------
def _warnings(at) -> str:
    return " ".join(w.value for w in at.sidebar.warning)


def test_an_over_cap_url_gets_a_message_and_the_cap(at):
    at.query_params.update({"K": "100000", "epochs": "99999999"})
    at.run()
    assert not at.exception
    warnings = _warnings(at)
    assert "URL parameter K='100000': 100,000 is above this server's limit of 4,096 (AECORE_MAX_CODE_SIZE); " \
           "using 4,096." in warnings
    assert "URL parameter epochs='99999999': 99,999,999 is above this server's limit of 10,000" in warnings
    mc, tc = at.session_state["model_cfg"], at.session_state["train_cfg"]
    assert (mc.code_size, tc.epochs) == (4096, 10_000)
    assert (at.query_params["K"], at.query_params["epochs"]) == ("4096", "10000")
    assert at.number_input(key="sb_code_size").max == 4096
    assert at.number_input(key="sb_epochs").max == 10_000
    assert not at.button(key="train_start").disabled  # the capped settings are a valid job


def test_the_caps_follow_the_settings(at, monkeypatch):
    monkeypatch.setenv("AECORE_MAX_CODE_SIZE", "32")
    at.query_params.update({"K": "100", "epochs": "0"})
    at.run()
    assert not at.exception
    assert "limit of 32 (AECORE_MAX_CODE_SIZE); using 32" in _warnings(at)
    assert "epochs='0' ignored: 0 must be >= 1" in _warnings(at)  # below the range: dropped as before
    assert at.session_state["model_cfg"].code_size == 32 and at.session_state["train_cfg"].epochs == 30
    assert at.number_input(key="sb_code_size").max == 32


@pytest.mark.parametrize("env, params, message", [
    ({"AECORE_MAX_STEPS": "1000"}, {"epochs": "100"},
     "Training steps (100 epochs x 23 batches of 64)=2,300 is above this server's limit of 1,000 per job"),
    ({"AECORE_MAX_PARAMS": "1000"}, {"K": "16", "variant": "sigmoid"},
     "Model parameters (sigmoid, K=16, 64 inputs)=2,128 is above this server's limit of 1,000 per job"),
    ({"AECORE_MAX_TRAIN_EXAMPLES": "1000"}, {},
     "Training examples of 'digits'=1,437 is above this server's limit of 1,000 per job"),
])
def test_a_job_beyond_a_data_dependent_cap_cannot_be_started(at, monkeypatch, env, params, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at.query_params.update(params)
    at.run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert any(message in e and next(iter(env)) in e for e in errors), errors
    assert at.session_state["model_cfg"] is None
    assert at.button(key="train_start").disabled  # the page says the settings are not valid
    assert any("not valid" in e.value for e in at.main.error)


def test_a_sessions_jobs_carry_its_owner(tmp_path):
    from apptest import APP
    from streamlit.testing.v1 import AppTest

    sessions = [AppTest.from_file(APP, default_timeout=60) for _ in range(2)]
    for s, k in zip(sessions, ("3", "5")):
        s.query_params.update({"K": k, "epochs": "1"})
        s.run()
        s.button(key="train_start").click().run()
    ja, jb = (s.session_state["job"] for s in sessions)
    assert ja.owner and jb.owner and ja.owner != jb.owner
    _wait([ja, jb])
    assert (ja.metrics["code_size"], jb.metrics["code_size"]) == (3, 5)


def test_a_page_whose_job_is_refused_shows_one_line_not_a_traceback(at, monkeypatch):
    # the Compare page has its own epochs field; the sidebar's checks do not cover it, submit does
    monkeypatch.setenv("AECORE_MAX_STEPS", "100")
    at.query_params["epochs"] = "1"  # the sidebar's own job is within the cap (23 steps)
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    at.button(key="cmp_train_live").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.main.error]
    assert any(e.startswith("Not started: Training steps (") and "is above this server's limit of 100 per job" in e
               and "AECORE_MAX_STEPS" in e for e in errors), errors
    assert not at.session_state["cmp_jobs"]  # nothing was queued
    monkeypatch.setenv("AECORE_MAX_STEPS", "250000")  # the page still works: raised, the same click trains
    at.button(key="cmp_train_live").click().run()
    assert not at.exception and len(at.session_state["cmp_jobs"]) == 1
    job = next(iter(at.session_state["cmp_jobs"].values()))
    job.stop()
    _wait([job])
