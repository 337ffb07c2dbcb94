"""Growth: how epoch time and peak memory grow with the data, the code size, the depth, and the
number of ratings; UMAP of 10,000 codes (first call and warm); the dashboard server's peak memory.

    python -m bench.growth [--quick] [--skip-server]

Every measurement runs in a fresh child process (``--one JSON``), so its peak resident memory
(``ru_maxrss``) is its own: interpreter + torch + data + model + optimizer + one epoch. The
recommender rows train one epoch of I-AutoRec (Adam, hidden 500) on synthetic ratings with
MovieLens 100K's density (6.3 %), from 100K to 10M ratings: the ratings are kept as sparse
triplets / CSR, so memory follows the number of ratings; the dense N x M float32 matrix that
is never built is shown beside it for scale. Writes bench/out/growth.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ML100K = (943, 1682, 100_000)  # users, items, ratings


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_image(spec: dict) -> dict:
    import torch

    from aecore.config import ModelConfig, TrainConfig
    from aecore.models import build_model
    from aecore.training import Failed, Finished, Progress, Trainer

    from .common import mnist

    torch.set_num_threads(spec["threads"])
    data, real = mnist()
    base_mb = _peak_mb()
    mc = ModelConfig(variant=spec["variant"], code_size=spec["k"], hidden=tuple(spec.get("hidden", ())))
    tc = TrainConfig(epochs=1, batch_size=256, lr=1e-3, n_train=spec["n"], snapshot_every=1e9, progress_every=1e9)
    for ev in Trainer(mc, tc, data).run():
        # with progress_every=1e9 the one Progress comes right after the last step, timed from the first:
        # its elapsed and samples/s are the Finished event's seconds and samples/s, without the test-set
        # evaluation (and its PCA baseline) that Finished waits for
        if isinstance(ev, Progress) and ev.step == ev.total_steps:
            params = sum(p.numel() for p in build_model(mc, data.dim).parameters())
            return {"epoch_s": ev.elapsed, "samples_per_s": ev.samples_per_second, "peak_mb": _peak_mb(),
                    "after_data_mb": base_mb, "real": real, "params": params}
        if isinstance(ev, (Failed, Finished)):
            break
    raise SystemExit(f"training failed: {getattr(ev, 'reason', 'it ended before its last step')}")


def synthetic_ratings(n_users: int, n_items: int, n_ratings: int, seed: int = 0):
    """``n_ratings`` distinct (user, item) pairs with ratings 1..5 from a rank-8 model."""
    import numpy as np

    from aecore.recsys.data import Ratings

    rng = np.random.default_rng(seed)
    cells = np.unique(rng.integers(0, n_users * n_items, size=int(n_ratings * 1.08), dtype=np.int64))
    cells = rng.permutation(cells)[:n_ratings]
    user, item = np.divmod(cells, n_items)
    u = rng.normal(size=(n_users, 8)).astype(np.float32)
    v = rng.normal(size=(n_items, 8)).astype(np.float32)
    score = np.einsum("ij,ij->i", u[user], v[item]) / np.sqrt(8)
    rating = np.clip(np.rint(3.5 + score), 1, 5).astype(np.float32)
    return Ratings(user.astype(np.int64), item.astype(np.int64), rating, n_users, n_items)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_recsys(spec: dict) -> dict:
    import gc

    import torch

    from aecore.recsys import make

    torch.set_num_threads(spec["threads"])
    t = time.perf_counter()
    train = synthetic_ratings(spec["users"], spec["items"], spec["ratings"])
    make_s = time.perf_counter() - t
    model = make("autorec-item", hidden=500, epochs=1, optimizer="adam", lr=1e-3, batch_size=64, valid_fraction=0.0,
                 ensemble=1, residual=False, threads=spec["threads"])
    gc.collect()
    before = _status_mb("VmRSS")  # the process with the ratings as triplets, before the fit
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak from here on is the fit's
    t = time.perf_counter()
    model.fit(train)
    return {"epoch_s": time.perf_counter() - t, "make_s": make_s, "ratings": len(train),
            "fit_peak_mb": _status_mb("VmHWM") - before, "triplets_mb": (train.user.nbytes + train.item.nbytes
                                                                          + train.rating.nbytes) / 2**20}


def one_umap(spec: dict) -> dict:
    import numpy as np

    from aecore.embedding import embed_2d

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(10, spec["k"]))
    codes = (centers[rng.integers(0, 10, spec["n"])] + 0.3 * rng.normal(size=(spec["n"], spec["k"]))).astype(np.float32)
    out = {}
    for name in ("first", "warm"):  # the warm call gets other codes (a cache must not answer it)
        codes = codes + np.float32(1e-3) * rng.normal(size=codes.shape).astype(np.float32)
        t = time.perf_counter()
        emb = embed_2d(codes, method="umap", seed=0)
        out[f"{name}_s"] = time.perf_counter() - t
    out["method"] = emb[1] if isinstance(emb, tuple) else getattr(emb, "method", "?")
    out["peak_mb"] = _peak_mb()
    return out


def child(kind: str, spec: dict, timeout: float = 1800) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec.get("threads", 2))}
    proc = subprocess.run([sys.executable, "-m", "bench.growth", "--one", json.dumps({"kind": kind, **spec})],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _proc_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _spill_dirs() -> set[Path]:
    return set(Path("/dev/shm").glob("aecore-jobs-*")) if Path("/dev/shm").is_dir() else set()


def _tree_memory_mb(pid: int, spills: set[Path] = frozenset()) -> dict:
    """Memory of ``pid`` and its descendants, in MB (from /proc/<pid>/smaps).

    ``rss`` sums each process's resident set: pages shared between processes (torch's libraries
    in the fork server and the children it forks, a memory-mapped data set) count once per process.
    ``pss`` gives each shared page to its sharers in equal parts. ``shm`` is the data the server
    wrote to /dev/shm for its job processes (memory, mapped by anyone or not). ``total`` counts
    every page once: ``pss`` without the mapped /dev/shm pages, plus ``shm``."""
    rss = pss = mapped_shm = 0.0
    prefixes = tuple(str(d) + "/" for d in spills)
    for p in _proc_tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps").read_text()
        except OSError:  # ended meanwhile
            continue
        in_shm = False
        for line in text.splitlines():
            head = line.split(None, 1)[0] if line else ""
            if "-" in head and not head.endswith(":"):  # a mapping's header: address range ... path
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                in_shm = bool(prefixes) and path.startswith(prefixes)
            elif head == "Rss:":
                rss += int(line.split()[1]) / 1024
            elif head == "Pss:":
                kb = int(line.split()[1]) / 1024
                pss += kb
                mapped_shm += kb if in_shm else 0.0
    shm = sum(f.stat().st_size for d in spills for f in d.rglob("*") if f.is_file()) / 2**20
    return {"rss": rss, "pss": pss, "shm": shm, "total": pss - mapped_shm + shm}


def server_memory(epochs: int, jobs: int = 10) -> dict:
    """Memory of the Streamlit server and its job children with MNIST chosen and one sigmoid K=64
    job training on it (a real server, a real Chromium page): resident (RSS), proportional (PSS)
    and the /dev/shm copy of the data, idle, with the page open, at the peak and after the job."""
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import CHROMIUM, CHROMIUM_ARGS, Server
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="aecore-bench-mem-"))
    old_spills = _spill_dirs()
    server = Server(tmp)
    mem = lambda: _tree_memory_mb(server.proc.pid, _spill_dirs() - old_spills)  # noqa: E731
    out = {"idle": mem()}
    peak = {"rss": 0.0, "pss": 0.0, "shm": 0.0, "total": 0.0}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{server.url}/?dataset=mnist&variant=sigmoid&K=64&epochs={epochs}&batch=128")
            button = page.get_by_role("button", name="Train", exact=True)
            button.wait_for(timeout=120_000)
            out["page"] = mem()
            button.click()
            t = time.perf_counter()
            done = page.get_by_text("Finished after")
            while time.perf_counter() - t < 600:
                m = mem()
                peak = {k: max(peak[k], m[k]) for k in peak}
                if done.count():
                    break
                time.sleep(0.25)
            out["train_s"] = time.perf_counter() - t
            time.sleep(1.0)  # the job's process has ended and its memory is back
            out["after"] = mem()
            # the same session trains again and again, as a student does in a lesson: what it held for
            # its earlier jobs must be freed, not pile up job after job
            out["series"] = [out["after"]]
            for i in range(2, jobs + 1):
                button.click()
                page.get_by_text(f"Job {i}:").first.wait_for(timeout=60_000)
                page.get_by_text("Finished after").first.wait_for(timeout=600_000)
                time.sleep(1.0)
                out["series"].append(mem())
            browser.close()
    finally:
        server.stop()
    out["peak"] = peak
    return out


# the same measurement on commit f43af3f, before PCA and the error metrics worked in chunks of rows and
# before the server kept the /dev/shm copy of a data set instead of its own (3 epochs, 7.1 s)
SERVER_EARLIER = ("Before the server shared its data with its jobs and PCA worked in chunks (commit f43af3f, "
                  "same measurement): page open 403 MB PSS; peak 2131 MB RSS, 1807 MB PSS, 1808 MB total; "
                  "after the job 829 MB PSS, 1039 MB total.")


# the same series on commit ca67cf8, before the replay slider stopped holding every finished job's
# snapshots and the job manager collected and trimmed the heap after each job
SERIES_EARLIER = ("Before the replay slider stopped holding every finished job's snapshots (commit ca67cf8, same "
                  "measurement): 822, 856, 870, 905, 958, 1001, 1016, 1072, 1072, 1130 MB; +308 MB "
                  "(+34.2 MB per job).")


def server_table(epochs: int, jobs: int = 10) -> list[str]:
    """The server-memory section's lines (a failure is reported, not hidden)."""
    try:
        r = server_memory(epochs, jobs)
    except Exception as exc:  # noqa: BLE001  (a browser or server problem is reported, not hidden)
        return ["# Dashboard server memory", "", f"Not measured: {type(exc).__name__}: {exc}", ""]
    rows = [("server idle", r["idle"]), ("page open, MNIST chosen", r["page"]),
            ("peak while training (each column's own maximum)", r["peak"]), ("after the job", r["after"])]
    lines = [f"# Dashboard server memory (MNIST chosen, one sigmoid K=64 job training on it, {epochs} epochs "
             f"in {r['train_s']:.1f} s)", "",
             "The Streamlit process and all its descendants (the job fork server, the job process), from "
             "/proc/<pid>/smaps. RSS sums each process's resident pages, so pages shared between processes "
             "(torch's libraries in the fork server and the job it forked, the memory-mapped data) count once "
             "per process. PSS splits each shared page among its sharers. /dev/shm is the copy of the data "
             "the server writes for its job processes to map (and maps itself rather than keeping a "
             "second copy in its own memory). The total counts every page once: PSS without the mapped /dev/shm "
             "pages, plus /dev/shm.", "",
             "| state | RSS, summed (MB) | PSS (MB) | /dev/shm data (MB) | total (MB) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {m['rss']:.0f} | {m['pss']:.0f} | {m['shm']:.0f} | {m['total']:.0f} |" for name, m in rows]
    series = r["series"]
    totals = [m["total"] for m in series]
    lines += ["", SERVER_EARLIER, "",
              f"The same browser session then trained the same job again, {len(series)} jobs in all. Total (MB) "
              f"after each job: {', '.join(f'{v:.0f}' for v in totals)}; last minus first: "
              f"{totals[-1] - totals[0]:+.0f} MB ({(totals[-1] - totals[0]) / max(len(totals) - 1, 1):+.1f} MB per job).",
              "", SERIES_EARLIER, ""]
    return lines


def _fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller grids (CI-sized)")
    ap.add_argument("--skip-server", action="store_true", help="leave out the dashboard server's memory")
    ap.add_argument("--server-only", action="store_true",
                    help="measure only the dashboard server's memory (bench/out/growth-server.md)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        res = {"image": one_image, "recsys": one_recsys, "umap": one_umap}[spec.pop("kind")](spec)
        print(json.dumps(res))
        return 0

    from .common import OUT, machine_line, write

    if args.server_only:
        write("growth-server", "\n".join(server_table(epochs=1 if args.quick else 3, jobs=2 if args.quick else 10)))
        print(OUT.joinpath("growth-server.md").read_text(), flush=True)
        return 0
    threads = min(2, os.cpu_count() or 1)
    q = args.quick
    lines = ["# Growth: epoch time and peak memory", "", machine_line(),
             "Each row is one fresh process training one epoch (batch 256, Adam) on MNIST; peak = the process's "
             "maximum resident memory at the end of the epoch (interpreter, torch, MNIST, model, optimizer, the epoch; not the evaluation after it); "
             "'after data' = the same before the model was built.", ""]

    def table(title, key, rows):
        lines.extend([f"## {title}", "", f"| {key} | parameters | epoch (s) | samples/s | peak MB | after data MB |",
                      "| ---: | ---: | ---: | ---: | ---: | ---: |"])
        for label, spec in rows:
            r = child("image", {**spec, "threads": threads})
            if "error" in r:
                lines.append(f"| {label} | failed: {r['error']} | | | | |")
            else:
                lines.append(f"| {label} | {r['params']:,} | {r['epoch_s']:.2f} | {r['samples_per_s']:,.0f} | "
                             f"{r['peak_mb']:.0f} | {r['after_data_mb']:.0f} |")
            print(lines[-1], flush=True)
        lines.append("")

    sizes = (10_000,) if q else (10_000, 20_000, 40_000, 60_000)
    table("Dataset size (784-256-784 sigmoid)", "training images",
          [(f"{n:,}", {"variant": "sigmoid", "k": 256, "n": n}) for n in sizes])
    ks = (16,) if q else (16, 64, 256, 1024)
    table("Code size K (sigmoid, 60,000 images)" if not q else "Code size K (sigmoid, 10,000 images)", "K",
          [(str(k), {"variant": "sigmoid", "k": k, "n": 10_000 if q else 60_000}) for k in ks])
    depths = [((), "784-30-784"), ((1000,), "1000"), ((1000, 500), "1000-500"), ((1000, 500, 250), "1000-500-250")]
    if q:
        depths = depths[1:2]
    table(f"Depth (deep, K=30, {'10,000' if q else '60,000'} images; hidden layers)", "hidden",
          [(lab, {"variant": "deep" if h else "sigmoid", "k": 30, "hidden": list(h), "n": 10_000 if q else 60_000})
           for h, lab in depths])

    scales = (1,) if q else (1, 10, 100)
    lines.extend(["## Recommender: one I-AutoRec epoch (hidden 500, Adam, batch 64) against the number of ratings",
                  "", "Synthetic ratings (rank-8 model, 1..5) at MovieLens 100K's density (6.3 %): users and items "
                  "both grow by sqrt(scale). The fit (one network, plain target) includes building the sparse "
                  "views and the final encoding of every item; its peak is the process's high-water mark "
                  "(VmHWM, reset before the fit) above its memory with the ratings loaded.", "",
                  "| ratings | users x items | dense N x M float32 (never built) | ratings as triplets | "
                  "fit: epoch (s) | fit: peak memory above the triplets | ms per 1,000 ratings |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"])
    for s in scales:
        f = s ** 0.5
        users, items, n = round(ML100K[0] * f), round(ML100K[1] * f), ML100K[2] * s
        r = child("recsys", {"users": users, "items": items, "ratings": n, "threads": threads})
        dense_mb = users * items * 4 / 2**20
        if "error" in r:
            lines.append(f"| {n:,} | {users:,} x {items:,} | {dense_mb:,.0f} MB | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {r['ratings']:,} | {users:,} x {items:,} | {dense_mb:,.0f} MB | {r['triplets_mb']:,.0f} MB | "
                         f"{r['epoch_s']:.1f} | {r['fit_peak_mb']:,.0f} MB | {1e6 * r['epoch_s'] / r['ratings']:.2f} |")
        print(lines[-1], flush=True)
    lines.append("")

    if q:  # its numba compile alone takes about half a minute, whatever the size
        lines.extend(["## UMAP", "", "Not run by --quick (the full run times 10,000 codes).", ""])
    else:
        r = child("umap", {"n": 10_000, "k": 32})
        lines.extend(["## UMAP of 10,000 codes (K=32), one fresh process", "",
                      "| first call (s, includes numba compile) | warm call (s) | goal (warm) | peak MB |",
                      "| ---: | ---: | --- | ---: |"])
        if "error" in r:
            lines.append(f"| failed: {r['error']} | | | |")
        else:
            lines.append(f"| {r['first_s']:.1f} | {r['warm_s']:.1f} | < 10 | {r['peak_mb']:.0f} |")
        lines.append("\nThe dashboard hides the first-call compile: `state.job_manager()` starts a background "
                     "warm-up (`aecore.embedding.warm_umap`) when the server starts.\n")
        print(lines[-2], flush=True)

    if not args.skip_server:
        write("growth-server", "\n".join(server_table(epochs=1 if q else 3, jobs=2 if q else 10)))
        print(OUT.joinpath("growth-server.md").read_text(), flush=True)
    text = "\n".join(lines)
    write("growth", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
