"""How `make test` shares the tests between its two pytest-xdist workers (tests/conftest.py)."""
from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import conftest

TESTS = Path(__file__).resolve().parent


def _config(dist: str, workers: int = 2):
    values = {"dist": dist, "tx": [f"{workers}*popen"], "numprocesses": workers}
    return types.SimpleNamespace(getvalue=values.__getitem__)


def test_every_module_that_imports_ray_shares_the_ray_unit():
    # two local Ray clusters at once on two cores starve each other (and each wants both CPUs)
    uses_ray = sorted(p.name for p in TESTS.glob("test_*.py") if re.search(r"^\s*import ray\b", p.read_text(), re.M))
    assert uses_ray == sorted(conftest.RAY_MODULES)


def test_the_scheduler_makes_each_module_one_unit_and_the_ray_modules_one_together():
    pytest.importorskip("xdist", reason="the scheduler hook is pytest-xdist's")
    sched = conftest.pytest_xdist_make_scheduler(_config("loadfile"), None)
    unit = sched._split_scope
    assert unit("tests/test_sweep.py::test_a[1]") == unit("tests/test_ray_runner.py::test_b") \
        == unit("tests/test_app_sweep.py::test_c") == "ray"
    assert unit("tests/test_training.py::test_a") == unit("tests/test_training.py::test_b") == "tests/test_training.py"
    assert unit("tests/test_training.py::test_a") != unit("tests/test_cli.py::test_a")
    assert unit("tests/sub/test_sweep.py::t") == "ray"  # by file name, wherever pytest roots the ids
    assert sched.numnodes == 2


@pytest.mark.parametrize("dist", ["load", "loadscope", "worksteal", "no"])
def test_other_distribution_modes_keep_xdist_s_own_scheduler(dist):
    assert conftest.pytest_xdist_make_scheduler(_config(dist), None) is None
