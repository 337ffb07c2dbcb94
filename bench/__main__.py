"""Every benchmark in one command; writes BENCHMARKS.md at the repository root.

    python -m bench            # the full runs (tens of minutes on a 2-core CPU)
    python -m bench --quick    # CI-sized (under 3 minutes): bench/out/quick/BENCHMARKS.md, plumbing only
    python -m bench --only training,anchors

Each part is its own module (``python -m bench.<part> --help``) writing bench/out/<part>.md;
this runs them one after another (never two at once: they would time each other) and then
joins their tables under the machine's description. A part that fails is reported, not hidden.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import OUT, machine_line

ROOT = Path(__file__).resolve().parent.parent
# part -> (full arguments, quick arguments, output files)
PARTS = {
    "training": ([], ["--quick"], ["training-cpu.md"]),
    "backward": ([], ["--quick"], ["backward-cpu.md"]),
    "anchors": ([], ["--quick"], ["anchors-deep.md", "anchors-linear.md", "anchors-vae.md", "anchors-sweeps.md"]),
    "dashboard": (["--repeats", "3", "--epochs", "1500"], ["--repeats", "1", "--epochs", "60"], ["dashboard.md", "dashboard-pinned.md"]),
    "recsys": ([], ["--quick"], ["recsys.md"]),
    "documents": ([], ["--epochs", "1", "--n-train", "3000", "--n-test", "1000"], ["documents.md"]),
    "pretrain": ([], ["--pretrain-epochs", "1", "--finetune-epochs", "5", "--n-unlabelled", "2000", "--repeats", "1"],
                 ["pretrain.md"]),
    "growth": ([], ["--quick", "--skip-server"], ["growth.md", "growth-server.md"]),
    "pages": ([], ["--dataset", "digits", "--repeats", "1", "--epochs", "0", "--pages", "Filters,Runs"], ["pages.md"]),
}
# the GPU table comes from `bash bench/gpu.sh` on a GPU machine (bench/out/gpu-cuda.md)
GPU_FILES = ("gpu-cuda.md",)


def _blocks(text: str) -> dict[str, str]:
    """The parts' sections of an existing BENCHMARKS.md, by the markers around each."""
    import re

    return {m.group(1): m.group(2).strip() + "\n"
            for m in re.finditer(r"<!-- bench:([\w-]+) -->\n(.*?)<!-- /bench:\1 -->", text, re.S)}


def _header_machine(text: str) -> str | None:
    """The machine line under an existing BENCHMARKS.md's title."""
    for line in text.splitlines()[:6]:
        if line.startswith("CPU: "):
            return line
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--no-run", action="store_true", help="only join the tables already in bench/out/")
    args = ap.parse_args(argv)
    parts = args.only.split(",")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    status = {}
    target = ROOT / "BENCHMARKS.md"
    if args.quick:  # CI-sized numbers go beside the full ones, never over them
        os.environ["AECORE_BENCH_OUT"] = str(OUT / "quick")
        out, target = OUT / "quick", OUT / "quick" / "BENCHMARKS.md"
    else:
        out = OUT
    for part in parts if not args.no_run else []:
        full, quick, _ = PARTS[part]
        cmd = [sys.executable, "-m", f"bench.{part}", *(quick if args.quick else full)]
        print(f"== {' '.join(cmd[2:])}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        status[part] = (rc, time.perf_counter() - t)
        print(f"== {part}: exit code {rc}, {status[part][1]:.0f} s", flush=True)
    blocks = {}  # part -> its section(s), between markers so that a partial run replaces only its own
    for part in parts:
        body = []
        for name in PARTS[part][2]:
            path = out / name
            if path.exists():  # (an optional extra file of a part is left out when absent)
                text = path.read_text().replace("\n# ", "\n## ")
                body += [text.replace("# ", "## ", 1) if text.startswith("# ") else text, ""]
            elif name == PARTS[part][2][0]:
                rc = status.get(part, (None, 0))[0]
                body += [f"## {part}", "", f"Not measured in this run (exit code {rc}).", ""]
        blocks[part] = "\n".join(body).rstrip() + "\n"
    gpu = [OUT / n for n in GPU_FILES if (OUT / n).exists()]
    if gpu:
        blocks["gpu"] = "\n".join(path.read_text().replace("# ", "## ", 1) for path in gpu).rstrip() + "\n"
    earlier = target.read_text() if target.exists() and set(parts) != set(PARTS) else ""
    old = _blocks(earlier)
    if "gpu" not in blocks and "gpu" not in old:
        blocks["gpu"] = ("## GPU\n\nNot yet measured: no GPU was available to this project's sessions so far. "
                         "`bash bench/gpu.sh` (torch, numpy, scikit-learn and safetensors only; under 5 minutes) "
                         "measures aecore's Trainer, the reference loop and a CUDA-graph bound on CUDA, then "
                         "`python -m bench --no-run --only <parts>` puts its tables here.\n")
    merged = {**old, **blocks}
    # a block named "<part>-<label>" (say, one part's table from another machine, kept by hand)
    # follows its part's own
    order = [n for p in [*PARTS, "gpu"] for n in [p, *sorted(k for k in merged if k.startswith(p + "-"))]]
    # the header names the machine of the sections that do not name their own: on a partial run
    # those came from the earlier run, so its line stays
    header = _header_machine(earlier)
    sections = ["# Benchmarks", "", header or machine_line(), "",
                "Made by `python -m bench`" + (" --quick" if args.quick else "") + ". Each section below is one "
                "part's own output (bench/out/); run a part alone with `python -m bench.<part>`; "
                "`--only a,b` replaces only those parts' sections here. A section that names its machine "
                "was measured there; the others on the machine above.", ""]
    for name in order + sorted(set(merged) - set(order)):
        if name in merged:
            sections += [f"<!-- bench:{name} -->", merged[name].rstrip(), f"<!-- /bench:{name} -->", ""]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(sections))
    print(f"wrote {target}")
    return 1 if any(rc for rc, _ in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
