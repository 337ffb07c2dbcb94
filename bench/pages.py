"""Page switch speed: click a page's link in the sidebar, then time its heading and the moment it
has finished drawing, for every page, with a trained model in the session.

    python -m bench.pages [--dataset mnist] [--repeats 3] [--epochs 5]

Runs a real Streamlit server and headless Chromium (as the browser tests do), trains one model
from the Train page, then visits every page in the sidebar's order, ``--repeats`` times. The first
visit of a page is its cold start (data loaded, PCA fitted, caches filled); the later visits are
warm. "Drawn" is the first moment after the heading when the page's script has ended
(``data-test-script-state`` on Streamlit's app element), no placeholder or spinner is left and
every plotly chart has its SVG.
Writes bench/out/pages.md. Numbers on a shared 2-core machine are noisy: read min/median/max.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM, CHROMIUM_ARGS, FIGURES_JS, Server  # noqa: E402

from .common import OUT, machine_line, mmm  # noqa: E402

# the sidebar's pages after Train, in its order
PAGES = ["Filters", "Latent space", "Compare with PCA", "Sweep", "Denoise & inpaint", "Generate", "Runs",
         "Documents", "Features & pre-training", "Recommend", "Train"]
# still busy: the script runs, an element's code is loading, a spinner turns, or a plotly chart the
# script sent is not drawn yet (its SVG comes after the script has ended)
BUSY_JS = """() => !!document.querySelector('[data-testid="stApp"][data-test-script-state="running"]')
  || !!document.querySelector('[data-testid="stSkeleton"], [data-testid="stSpinner"]')
  || Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).some(
       e => !e.querySelector('.js-plotly-plot .main-svg'))"""


def visit(page, title: str, timeout: float = 120.0, poll: float = 0.02) -> dict:
    """Click ``title``'s link; seconds to its heading and to drawn, and what it drew."""
    t0 = time.perf_counter()
    page.get_by_role("link", name=title).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout * 1000)
    heading = time.perf_counter() - t0
    while page.evaluate(BUSY_JS):
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"page {title!r} still busy after {timeout} s")
        time.sleep(poll)
    drawn = time.perf_counter() - t0
    return {"heading_s": heading, "drawn_s": drawn, "figures": len(page.evaluate(FIGURES_JS))}


def train_from_page(page, url: str, dataset: str, epochs: int, timeout: float = 600.0) -> None:
    page.goto(f"{url}/?dataset={dataset}&variant=sigmoid&K=32&epochs={epochs}&lr=0.01&batch=64")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Finished after").first.wait_for(timeout=timeout * 1000)
    while page.evaluate(BUSY_JS):
        time.sleep(0.05)


def table(visits: dict[str, list[dict]], setting: str) -> str:
    """The markdown table: per page, its first visit (cold) and the later ones (warm: min / median / max)."""
    lines = [f"# Page switch speed ({setting})", "", machine_line(), "",
             "Seconds from the click on a page's link: to its heading, and to drawn (its script ended, no "
             "placeholder or spinner left, every plotly chart drawn). Cold: the first visit. Warm: the later "
             "ones, min / median / max.", "",
             "| page | figures | cold: heading | cold: drawn | warm: heading | warm: drawn |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for title, v in visits.items():
        warm = v[1:]
        lines.append(f"| {title} | {v[0]['figures']} | {v[0]['heading_s']:.2f} | {v[0]['drawn_s']:.2f} | "
                     f"{mmm([x['heading_s'] for x in warm]) if warm else 'n/a'} | "
                     f"{mmm([x['drawn_s'] for x in warm]) if warm else 'n/a'} |")
    slow = max(visits, key=lambda p: visits[p][0]["drawn_s"])
    warm_median = {p: statistics.median(x["drawn_s"] for x in v[1:]) for p, v in visits.items() if len(v) > 1}
    lines += ["", f"Slowest cold page: {slow} ({visits[slow][0]['drawn_s']:.2f} s to drawn)."]
    if warm_median:
        w = max(warm_median, key=warm_median.get)
        lines[-1] += f" Slowest warm page: {w} (median {warm_median[w]:.2f} s to drawn)."
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", help="mnist needs AECORE_DATA (or its download); digits is built in")
    ap.add_argument("--repeats", type=int, default=3, help="visits of every page (the first one is cold)")
    ap.add_argument("--epochs", type=int, default=5, help="of the model trained first; 0: train none (plumbing only)")
    ap.add_argument("--pages", default=",".join(PAGES), help="which pages, comma-separated (default: all, in order)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.epochs < 0:
        ap.error("--repeats must be at least 1 and --epochs at least 0")
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = [p for p in pages if p not in PAGES]
    if unknown or not pages:
        ap.error(f"unknown page(s) {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(PAGES)}")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="aecore-bench-pages-"))
    visits: dict[str, list[dict]] = {p: [] for p in pages}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        server = Server(tmp)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            t = time.perf_counter()
            if args.epochs:
                train_from_page(page, server.url, args.dataset, args.epochs)
            else:
                page.goto(f"{server.url}/?dataset={args.dataset}")
                page.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)
            trained_s = time.perf_counter() - t
            for _ in range(args.repeats):
                for title in pages:
                    visits[title].append(visit(page, title))
                    print(title, visits[title][-1], flush=True)
            page.close()
        finally:
            server.stop()
        browser.close()

    model = (f"sigmoid K=32 trained from the Train page, {args.epochs} epochs in {trained_s:.0f} s" if args.epochs
             else "no model trained")
    text = table(visits, f"{args.dataset}; {model}; every page visited {args.repeats} times in the sidebar's order, "
                         "1280 px")
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "pages.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
