"""What the benchmarks rely on: their synthetic data, their memory probe, where --quick writes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.growth import _tree_memory_mb, one_image, synthetic_ratings


def test_a_training_steps_matrix_products_are_counted_without_the_inputs_gradient():
    """784-256-784: forward 2 products, backward 3 (both weight gradients, and the code's gradient;
    none for the input): 5 x 2 x 784 x 256 FLOPs per example, 83 % of the issue's 6 x parameters."""
    from aecore.config import ModelConfig
    from aecore.models import build_model
    from bench.training import step_matmul_flops

    assert step_matmul_flops(build_model(ModelConfig(variant="sigmoid", code_size=256), 784)) == 5 * 2 * 784 * 256
    deep = build_model(ModelConfig(variant="deep", code_size=30, hidden=(1000, 500, 250)), 784)
    layers = [784 * 1000, 1000 * 500, 500 * 250, 250 * 30]  # encoder; the decoder mirrors it
    assert step_matmul_flops(deep) == 2 * 3 * 2 * sum(layers) - 2 * 784 * 1000


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


def test_growth_row_times_the_epoch_and_counts_the_models_parameters():
    """One growth row (in this process): the epoch's seconds and samples/s agree, the parameter count
    is the model's (784-16-784: two 784 x 16 weights and two biases), memory is read."""
    r = one_image({"variant": "sigmoid", "k": 16, "n": 1_024, "threads": 1})
    assert r["params"] == 2 * 784 * 16 + 16 + 784
    assert r["epoch_s"] > 0 and r["samples_per_s"] == pytest.approx(1_024 / r["epoch_s"], rel=1e-6)
    assert r["peak_mb"] >= r["after_data_mb"] > 50
    deep = one_image({"variant": "deep", "k": 30, "hidden": [64], "n": 512, "threads": 1})
    assert deep["params"] == (784 * 64 + 64) + (64 * 30 + 30) + (30 * 64 + 64) + (64 * 784 + 784)


def test_documents_benchmark_passes_subsets_to_the_cli_only_when_asked():
    from bench.documents import command

    ns = dict(code_size=10, epochs=1, seed=0, data_dir="/data")
    full = command(type("A", (), dict(ns, n_train=None, n_test=None)))
    assert "--n-train" not in full and "--n-test" not in full and full[:3] == ["documents", "--dataset", "20newsgroups"]
    sub = command(type("A", (), dict(ns, n_train=3000, n_test=1000)))
    assert sub[sub.index("--n-train") + 1] == "3000" and sub[sub.index("--n-test") + 1] == "1000"
    # and the documents CLI itself takes both
    from aecore.cli import _build_parser

    parsed = _build_parser().parse_args(sub)
    assert (parsed.n_train, parsed.n_test) == (3000, 1000)


def _wait_rss(pid: int, mb: float) -> None:
    for _ in range(200):  # until the child has touched its memory
        with open(f"/proc/{pid}/status") as f:
            if next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) > mb * 1024:
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never reached {mb} MB")


def test_process_tree_memory_counts_children_and_shared_data_once(tmp_path):
    """RSS sums count a page two processes share twice, PSS splits it, and ``total`` counts the
    data file two children map once (PSS without the mapping, plus the file)."""
    # it says when all of its 200 MB are written: measured while it was still writing them, its PSS
    # (read a moment after its RSS) once came out at 188 MB
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(b'\\1' * (200 << 20)); "
                              "print(len(b), flush=True); time.sleep(30)"], stdout=subprocess.PIPE)
    spill = tmp_path / "aecore-jobs-test"
    spill.mkdir()
    data = spill / "x.npy"
    data.write_bytes(b"\1" * (100 << 20))
    readers = [subprocess.Popen([sys.executable, "-c", "import mmap, sys, time\n"
                                 f"f = open({str(data)!r}, 'rb'); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n"
                                 "s = sum(m[i] for i in range(0, len(m), 4096)); print(s, flush=True); time.sleep(30)"],
                                stdout=subprocess.PIPE) for _ in range(2)]
    try:
        child.stdout.readline()
        _wait_rss(child.pid, 190)
        for r in readers:
            r.stdout.readline()  # every page read once
        alone = _tree_memory_mb(child.pid)
        assert alone["rss"] > 190 and alone["pss"] > 190 and alone["shm"] == 0, alone  # MB
        tree = _tree_memory_mb(os.getpid(), {spill})
        assert tree["rss"] > alone["rss"] + 200  # this process, the 200 MB child, each reader's 100 MB
        assert tree["shm"] == pytest.approx(100)
        # PSS gives the readers 50 MB each of the shared file: about 100 MB less than RSS says
        assert tree["rss"] - tree["pss"] > 90
        # the file counted once: the readers' mapped share comes off, the file's size goes on
        assert abs(tree["total"] - tree["pss"]) < 10
    finally:
        for p in (child, *readers):
            p.kill()
            p.wait()


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


def test_the_training_goals_are_judged_on_the_worst_repeat_and_every_batch_256_row():
    from bench.training import goal_lines

    rows = [("a", 128, 1.45, 1.9, 50.0), ("a", 256, 1.31, 1.8, 61.0), ("b", 256, 1.6, 1.7, 71.0)]
    text = goal_lines(rows)
    assert "1.3x the canonical loop in float32: met** (the lowest of any repeat: 1.31" in text
    assert "batch 256: met** (a 61 %, b 71 %)" in text  # the batch-128 row's 50 % is not judged
    text = goal_lines([("a", 256, 1.29, 1.9, 80.0), ("b", 256, 1.5, 1.6, 59.6)])
    assert "float32: not met** (the lowest of any repeat: 1.29" in text
    assert "batch 256: not met** (a 80 %, b 60 %)" in text  # 59.6 rounds to 60 in print, still short
    assert goal_lines([]) == "Goals: no float32 rows in this run."
    # missed by less than two decimals show: four, so that "1.30" never stands beside "not met"
    assert "not met** (the lowest of any repeat: 1.2983;" in goal_lines([("a", 256, 1.29834, 1.4, 70.0)])
    assert "met** (the lowest of any repeat: 1.30;" in goal_lines([("a", 256, 1.3004, 1.4, 70.0)])
    # missed: how near the kernel 1.3x of the loop would be, the time left for the rest of the step,
    # and which rows are out of reach (1.3x needs more than the products alone would give)
    text = goal_lines([("a", 256, 1.1, 1.2, 75.0, 80.4, 120.0), ("b", 256, 1.2, 1.25, 93.0, 101.3, 110.0),
                       ("c", 128, 1.0, 1.1, 90.0, 112.0, 110.0)])
    assert "would have to run at 80 % (a, 256), 101 % (b, 256), 112 % (c, 128) of the fastest float32 matmul" in text
    assert "would reach 120 % (a), 110 % (b), 110 % (c)" in text
    assert "leave the rest of the step (activations, loss, Adam) 33 % (a, 256), 8 % (b, 256), 0 % (c, 128)" in text
    assert "no loop on these kernels can reach it for c at batch 128." in text and "for b at" not in text
    # without the ceiling field: the needs alone
    text = goal_lines([("a", 256, 1.1, 1.2, 75.0, 80.4)])
    assert "would have to run at 80 % (a, 256) of the fastest float32 matmul." in text and "would reach" not in text
    assert "would have to run" not in goal_lines([("a", 256, 1.31, 1.4, 75.0, 80.4)])  # met: no ceiling


GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: something else
"""


def test_the_machine_line_names_the_cpu_generation_a_bare_cloud_name_hides():
    from bench.common import cpu_description

    # the first processor's block only; family 25 model 17 is Genoa (Zen 4), not Zen 3
    assert cpu_description(GENOA) == "AMD EPYC (x86 family 25 model 17: Zen 4; AVX2, AVX-512, AVX512-BF16)"
    assert "family 25 model 1: Zen 3" in cpu_description(GENOA.replace("model\t\t: 17", "model\t\t: 1", 1))
    turin = GENOA.replace("cpu family\t: 25", "cpu family\t: 26", 1)
    assert "family 26 model 17: Zen 5" in cpu_description(turin)
    intel = GENOA.replace("AuthenticAMD", "GenuineIntel", 1).replace("model name\t: AMD EPYC", "model name\t: Xeon", 1)
    assert cpu_description(intel).startswith("Xeon (x86 family 25 model 17; AVX2")  # no AMD generation guessed
    assert cpu_description("processor\t: 0\nmodel name\t: Neoverse\n") == "Neoverse"  # no family, no flags


def test_a_partial_run_keeps_the_header_machine_and_puts_labelled_blocks_after_their_part(tmp_path, monkeypatch):
    import bench.__main__ as bm

    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\nCPU: the earlier machine\n\n"
                      "<!-- bench:gpu -->\n## GPU\nold gpu\n<!-- /bench:gpu -->\n\n"
                      "<!-- bench:training-zen5 -->\n## T on Zen 5\nkept\n<!-- /bench:training-zen5 -->\n\n"
                      "<!-- bench:recsys -->\n## R\nold recsys\n<!-- /bench:recsys -->\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "training-cpu.md").write_text("# Training loop speed (cpu)\n\nCPU: this machine\nnew table\n")
    monkeypatch.setattr(bm, "ROOT", tmp_path)
    monkeypatch.setattr(bm, "OUT", out)
    assert bm.main(["--no-run", "--only", "training"]) == 0
    text = target.read_text()
    assert text.splitlines()[2] == "CPU: the earlier machine"  # the sections not rerun came from it
    names = re.findall(r"<!-- bench:([\w-]+) -->", text)
    assert names == ["training", "training-zen5", "recsys", "gpu"]
    assert "new table" in text and "kept" in text and "old recsys" in text


@pytest.mark.parametrize("units, device, expected", [(False, "cpu", "float32"), (True, "cpu", "float32,bfloat16"),
                                                     (None, "cpu", "float32,bfloat16"),
                                                     (False, "cuda", "float32,bfloat16")])
def test_bfloat16_rows_are_left_out_where_the_cpu_would_emulate_them(monkeypatch, units, device, expected):
    from aecore import kernels
    from bench.training import default_precisions

    monkeypatch.setattr(kernels, "bf16_units", lambda: units)
    precisions, sentence = default_precisions(device)
    assert precisions == expected
    assert ("No bfloat16 rows" in sentence) is (expected == "float32")


def test_the_gpu_goal_is_judged_on_the_steady_rate_of_an_h100_class_gpu_only():
    from bench.gpu import goal_line

    assert goal_line(1_020_000.0, "cuda", "NVIDIA H100 80GB HBM3").endswith(
        "**met** (1,020,000 samples/s steady on NVIDIA H100 80GB HBM3).")
    assert "**not met** (999,999 samples/s" in goal_line(999_999.0, "cuda:0", "NVIDIA H200")
    assert "not judged (1,500,000 samples/s on NVIDIA A10G, not an H100-class GPU)" in goal_line(
        1.5e6, "cuda", "NVIDIA A10G")
    assert "not judged (40,000 samples/s on cpu, not a GPU)" in goal_line(4e4, "cpu")
    assert "not measured" in goal_line(None, "cuda", "NVIDIA H100")


def test_the_gpu_script_runs_end_to_end_on_the_cpu(tmp_path, monkeypatch):
    # the plumbing a GPU session runs once, with no second try: the same code on the CPU, tiny
    import bench.common
    from bench import gpu

    from aecore.data import Dataset

    x = np.random.default_rng(0).random((2560, 784), dtype=np.float32)  # (the graph check trains on 2,000)
    small = Dataset(name="random-784", x_train=x, y_train=None, x_test=x[:500].copy(), y_test=None, shape=(28, 28),
                    kind="image", value_range=(0.0, 1.0))
    monkeypatch.setattr(gpu, "mnist", lambda: (small, False))
    monkeypatch.setattr(bench.common, "OUT", tmp_path)
    assert gpu.main(["--device", "cpu", "--steps", "4", "--repeats", "1", "--warmup", "1", "--batches", "256"]) == 0
    text = (tmp_path / "gpu-cpu.md").read_text()
    rows = [r for r in text.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| " + n for n in gpu.MODELS]
    for r in rows:
        cells = r.strip("| ").split(" | ")
        assert cells[3] == "eager" and cells[9] == "n/a"  # no CUDA graph on a CPU, no hand graph
        whole, steady = (float(c.split(" / ")[1].replace(",", "")) for c in cells[4:6])  # medians
        assert whole > 0 and steady > 0
    assert text.count("**same training**") == 2  # the graph check ran both models (eagerly, on the CPU)
    assert "not judged (" in text and "on cpu, not a GPU)" in text


def test_the_page_switch_table_splits_the_first_visit_from_the_later_ones():
    from bench.pages import table

    def v(heading, drawn, figures=2):
        return {"heading_s": heading, "drawn_s": drawn, "figures": figures}

    visits = {"Filters": [v(0.5, 3.0), v(0.2, 0.9), v(0.3, 0.7), v(0.4, 0.8)],
              "Latent space": [v(0.6, 2.0, 4), v(0.3, 1.5, 4), v(0.3, 1.7, 4), v(0.2, 1.6, 4)],
              "Runs": [v(0.4, 0.5, 0)]}
    text = table(visits, "test")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")
            and not line.startswith("| page") and not line.startswith("| ---")}
    assert rows["Filters"][1:4] == ["2", "0.50", "3.00"]  # figures, cold heading, cold drawn: the first visit
    assert rows["Filters"][4:6] == ["0.2 / 0.3 / 0.4", "0.7 / 0.8 / 0.9 |"]  # the later three
    assert rows["Latent space"][1] == "4"
    assert rows["Runs"][4:6] == ["n/a", "n/a |"]  # one visit: nothing warm
    # cold: Filters took longest on its first visit; warm: Latent's median (1.6) beats Filters' (0.8)
    assert "Slowest cold page: Filters (3.00 s to drawn). Slowest warm page: Latent space (median 1.60 s" in text


def test_the_backward_benchmark_times_both_paths_and_checks_each_took_its_own(digits, monkeypatch):
    from aecore import backprop
    from aecore.config import ModelConfig
    from bench.backward import alternate, row

    monkeypatch.setenv("AECORE_BACKWARD", "autograd")
    mc = ModelConfig(variant="sigmoid", code_size=8)
    rates = alternate(mc, digits, batch=16, steps=4, repeats=2, warmup=1)
    assert sorted(rates) == ["analytic", "autograd"]
    assert all(len(v) == 2 and all(r > 0 for r in v) for v in rates.values())
    assert os.environ["AECORE_BACKWARD"] == "autograd"  # restored
    assert row("m", 16, {"analytic": [3.0, 4.0], "autograd": [2.0, 2.0]}) == \
        "| m | 16 | 3 / 3.5 / 4 | 2 / 2 / 2 | 1.5 / 1.75 / 2 | 1.750 |"
    # a model the written-out path does not take would time autograd twice: refused, naming it
    monkeypatch.setattr(backprop, "reason", lambda *a, **k: "not here")
    with pytest.raises(RuntimeError, match=r"asked for analytic gradients, the Trainer took \['autograd'\]"):
        alternate(mc, digits, batch=16, steps=4, repeats=1, warmup=1)
