"""Shared fixtures: a small real data set and a private cache/runs folder for every test."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

# The models under test are tiny (64 inputs); torch's intra-op threads only add overhead there,
# and on a busy 2-core machine they make a training step ~50x slower (spin-waiting threads).
torch.set_num_threads(1)

# `make test` runs the tests that are not browser tests on two pytest-xdist workers (`--dist loadfile`),
# then the browser tests in one process. Each test module is one unit of work, except the modules
# that start a local Ray cluster, which share one unit so that no two clusters run at once.
RAY_MODULES = ("test_ray_runner.py", "test_sweep.py", "test_app_sweep.py")


def _unit(path: str) -> str:
    """The unit of work of a test file (a node id's file part)."""
    name = path.rsplit("/", 1)[-1]  # pytest's node ids use / on every OS
    return "ray" if name in RAY_MODULES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Units(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid.split("::", 1)[0])

    return Units(config, log)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    """No test writes to ~/.cache: runs and downloads go to the test's own tmp folder."""
    monkeypatch.setenv("AECORE_RUNS", str(tmp_path / "aecore-runs"))
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "aecore-cache"))


def _digits_from_sklearn():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)  # pixels 0..16 -> [0, 1]
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return types.SimpleNamespace(name="digits", x_train=np.ascontiguousarray(x_tr), y_train=y_tr,
                                 x_test=np.ascontiguousarray(x_te), y_test=y_te, shape=(8, 8))


@pytest.fixture(scope="session")
def digits():
    """sklearn's 8x8 digits in [0, 1], float32, (N, 64): x_train, y_train, x_test, y_test, shape."""
    try:
        from aecore.data import load
    except ImportError:
        return _digits_from_sklearn()
    return load("digits")


# --- browser tests (tests/test_browser*.py): a real server and Debian's Chromium -------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Streamlit server on a free 127.0.0.1 port, with its own runs and cache; stopped by PID.
    A test module that needs other settings defines its own ``server`` fixture."""
    from browser import Server

    srv = Server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context; 1280 px wide, the narrowest window that shows figures side by side with
    the sidebar open (README); a module sets ``VIEWPORT = {...}`` for a taller window."""
    viewport = getattr(request.module, "VIEWPORT", {"width": 1280, "height": 2000})
    ctx = browser.new_context(viewport=viewport)
    pg = ctx.new_page()
    yield pg
    ctx.close()


# --- page tests: the app under streamlit.testing's AppTest ----------------------------------------
@pytest.fixture
def at():
    """The whole app (entry + shared sidebar); runs and cache are private (see ``_private_dirs``)."""
    from apptest import APP
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=60)
