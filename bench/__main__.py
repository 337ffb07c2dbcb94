"""Every benchmark in one command; writes BENCHMARKS.md at the repository root.

    python -m bench            # the full runs (tens of minutes on a 2-core CPU)
    python -m bench --quick    # CI-sized: a few minutes, numbers only to show the plumbing works
    python -m bench --only training,anchors

Each part is its own module (``python -m bench.<part> --help``) writing bench/out/<part>.md;
this runs them one after another (never two at once: they would time each other) and then
joins their tables under the machine's description. A part that fails is reported, not hidden.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from .common import OUT, machine_line

ROOT = Path(__file__).resolve().parent.parent
# part -> (full arguments, quick arguments, output files)
PARTS = {
    "training": ([], ["--quick"], ["training-cpu.md"]),
    "anchors": ([], ["--quick"], ["anchors.md"]),
    "dashboard": (["--repeats", "3", "--epochs", "1500"], ["--repeats", "1", "--epochs", "300"], ["dashboard.md", "dashboard-nice.md"]),
    "recsys": ([], ["--splits", "u1", "--models", "autorec-item,biased-mf,global-mean"], ["recsys.md"]),
    "documents": ([], ["--epochs", "1"], ["documents.md"]),
    "pretrain": ([], ["--pretrain-epochs", "1", "--finetune-epochs", "5", "--n-unlabelled", "2000"],
                 ["pretrain.md"]),
}


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
    for part in parts if not args.no_run else []:
        full, quick, _ = PARTS[part]
        cmd = [sys.executable, "-m", f"bench.{part}", *(quick if args.quick else full)]
        print(f"== {' '.join(cmd[2:])}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        status[part] = (rc, time.perf_counter() - t)
    sections = ["# Benchmarks", "", machine_line(), "",
                "Made by `python -m bench`" + (" --quick" if args.quick else "") + ". Each section below is one "
                "part's own output (bench/out/); run a part alone with `python -m bench.<part>`.", ""]
    for part in parts:
        for name in PARTS[part][2]:
            path = OUT / name
            if path.exists():  # (an optional extra file of a part is left out when absent)
                body = path.read_text().replace("\n# ", "\n## ")
                sections += [body.replace("# ", "## ", 1) if body.startswith("# ") else body, ""]
            elif name == PARTS[part][2][0]:
                rc = status.get(part, (None, 0))[0]
                sections += [f"## {part}", "", f"Not measured in this run (exit code {rc}).", ""]
    sections += ["## GPU", "", "Not yet measured: no GPU was available to this project's sessions so far. "
                 "`python -m bench.training --device cuda` measures the same table on CUDA.", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(sections))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 1 if any(rc for rc, _ in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
