"""What the benchmarks rely on: their synthetic data, their memory probe, where --quick writes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.growth import _proc_tree_rss_mb, synthetic_ratings


def test_synthetic_ratings_have_the_asked_size_distinct_cells_and_a_rating_scale():
    r = synthetic_ratings(90, 170, 1_000, seed=3)
    assert len(r) == 1_000 and r.shape == (90, 170)
    cells = r.user * r.n_items + r.item
    assert len(np.unique(cells)) == 1_000  # no pair twice (a CSR would sum them into ratings above 5)
    assert set(np.unique(r.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(np.unique(r.rating)) >= 4
    assert float(r.csr().max()) <= 5.0
    # the same seed gives the same matrix; another seed another one
    again, other = synthetic_ratings(90, 170, 1_000, seed=3), synthetic_ratings(90, 170, 1_000, seed=4)
    assert np.array_equal(again.user, r.user) and np.array_equal(again.rating, r.rating)
    assert not np.array_equal(other.user, r.user)


def test_process_tree_memory_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 << 20); time.sleep(30)"])
    try:
        deadline = 0
        while deadline < 100:  # wait until the child has touched its 200 MB
            with open(f"/proc/{child.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            if rss > 190 << 10:
                break
            deadline += 1
            subprocess.run(["sleep", "0.1"])
        alone = _proc_tree_rss_mb(child.pid)
        tree = _proc_tree_rss_mb(os.getpid())
        assert alone > 190  # MB
        assert tree > alone  # this process plus its child
    finally:
        child.kill()
        child.wait()


def test_quick_mode_writes_beside_the_full_numbers():
    root = Path(__file__).resolve().parent.parent
    committed = (root / "BENCHMARKS.md").read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "AECORE_BENCH_OUT"}
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "growth", "--no-run"],
                         capture_output=True, text=True, env=env, cwd=root)
    assert out.returncode == 0, out.stderr
    quick = root / "bench" / "out" / "quick" / "BENCHMARKS.md"
    assert f"wrote {quick}" in out.stdout and "--quick" in quick.read_text()
    assert (root / "BENCHMARKS.md").read_bytes() == committed  # the full numbers are untouched


def test_a_partial_run_replaces_only_its_own_sections():
    from bench.__main__ import _blocks

    text = ("# Benchmarks\n\n<!-- bench:training -->\n## T\nold training\n<!-- /bench:training -->\n\n"
            "<!-- bench:recsys -->\n## R\nrecsys table\n| a | b |\n<!-- /bench:recsys -->\n")
    blocks = _blocks(text)
    assert blocks == {"training": "## T\nold training\n", "recsys": "## R\nrecsys table\n| a | b |\n"}
    committed = _blocks((Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text())
    assert {"training", "anchors", "recsys", "gpu"} <= set(committed)  # the committed file carries the markers
