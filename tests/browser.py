"""Shared helpers for the browser tests: a real Streamlit server and headless Chromium.

The server runs on 127.0.0.1 on a free port, with its run store and cache in a temporary
folder, and is stopped by its PID. Chromium is Debian's (`make test` installs it); Playwright
drives it without downloading a browser of its own.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "screenshots"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "streamlit.log", "w")
        full_env = {**os.environ, "AECORE_RUNS": str(tmp / "runs"), "AECORE_CACHE": str(tmp / "cache"),
                    **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
             "--server.port", str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.perf_counter()
        self.ready_after = self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"streamlit did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (make test installs Debian's chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


# JavaScript that reads every figure on the page (plotly, and the live views' SVG charts): its title and a signature of its data
FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => {
  const t = el.layout && el.layout.title;
  const title = t ? (typeof t === 'string' ? t : (t.text || '')) : '';
  const s = JSON.stringify(el.data || []);
  let h = 0; for (let i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; }
  // y is an array, or {dtype, bdata, shape} when Streamlit sends numpy data base64-encoded
  const count = y => !y ? 0 : (y.length !== undefined ? y.length : (y.bdata ? parseInt(String(y.shape || 1)) : 0));
  const pts = Math.max(0, ...(el.data || []).map(tr => count(tr.y)));
  return {title: title, sig: s.length + ':' + h, traces: (el.data || []).length, points: pts, kind: 'plotly'};
}).concat(Array.from(document.querySelectorAll('svg.aecore-live-chart')).map(el => ({
  // the live views' light SVG charts (dashboard/figures_live.py) say the same in data attributes
  title: el.dataset.title || '', sig: el.dataset.sig || '', traces: parseInt(el.dataset.traces || '0'),
  points: parseInt(el.dataset.points || '0'), kind: 'svg'})))"""

ERRORS_JS = """() => Array.from(document.querySelectorAll(
  '[data-testid="stException"], [data-testid="stAlertContentError"]')).map(e => e.innerText)"""


# plotly figures whose legend box overlaps their title or an axis title: "figure title: what it hits"
LEGEND_OVERLAPS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(el => {
  const legend = el.querySelector('g.legend');
  if (!legend) return [];
  const l = legend.getBoundingClientRect();
  const t = el.querySelector('.g-gtitle text');
  const name = t ? t.textContent : '';
  return Array.from(el.querySelectorAll('.g-gtitle text, .g-xtitle text, .g-ytitle text')).filter(x => {
    const r = x.getBoundingClientRect();
    return r.width > 0 && l.left < r.right && r.left < l.right && l.top < r.bottom && r.top < l.bottom;
  }).map(x => name + ': ' + x.textContent);
})"""


# plotly figures whose title or axis title runs past the figure's edge (plotly never wraps them)
CLIPPED_TITLES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(el => {
  const f = el.getBoundingClientRect();
  return Array.from(el.querySelectorAll('.g-gtitle text, .g-xtitle text, .g-ytitle text')).filter(x => {
    const r = x.getBoundingClientRect();
    return r.width > 0 && (r.left < f.left - 1 || r.right > f.right + 1 || r.top < f.top - 1 || r.bottom > f.bottom + 1);
  }).map(x => x.textContent);
})"""


# texts in the page's main area that end in "…" because their box is too narrow (button and widget labels)
TRUNCATED_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] *')).filter(e => {
  const c = getComputedStyle(e);
  return c.textOverflow === 'ellipsis' && c.overflow !== 'visible' && e.scrollWidth > e.clientWidth + 1;
}).map(e => e.innerText.trim()).filter(t => t)"""


def truncated_texts(page) -> list[str]:
    """Labels in the page's main area cut short with "…" (the sidebar is left out: its width is fixed)."""
    return page.evaluate(TRUNCATED_JS)


FIGURE_BOXES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).map(el => {
  const r = el.getBoundingClientRect(); const p = el.querySelector('.js-plotly-plot');
  const t = p && p.layout && p.layout.title;
  return {title: t ? (typeof t === 'string' ? t : (t.text || '')) : '', left: r.left, top: r.top, width: r.width};
})"""

# the page's width inside its padding (what the container query in dashboard.figures.LAYOUT_CSS measures)
PAGE_WIDTH_JS = """() => { const el = document.querySelector('[data-testid="stMainBlockContainer"]');
  const cs = getComputedStyle(el); return el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight); }"""


def figure_boxes(page) -> list[dict]:
    """Each plotly figure's title, left, top and width on the page (px)."""
    return page.evaluate(FIGURE_BOXES_JS)


def page_width(page) -> float:
    """The main area's width inside its padding (px)."""
    return page.evaluate(PAGE_WIDTH_JS)


def clipped_titles(page) -> list[str]:
    """The figure and axis titles on the page that do not fit inside their figure."""
    return page.evaluate(CLIPPED_TITLES_JS)


def legend_overlaps(page) -> list[str]:
    """Every plotly figure's legend that covers its title or an axis title, as "title: what it hits"."""
    return page.evaluate(LEGEND_OVERLAPS_JS)


def layout_faults(page) -> list[str]:
    """What is wrong with the page's figure layout: legends over titles, titles past their figure's edge."""
    return [f"legend covers {x}" for x in legend_overlaps(page)] + [f"title cut off: {x}" for x in clipped_titles(page)]


def legends(page) -> list[str]:
    """Titles of the plotly figures on the page that draw a legend."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
      .filter(el => el.querySelector('g.legend')).map(el => {
        const t = el.layout && el.layout.title; return t ? (typeof t === 'string' ? t : (t.text || '')) : ''; })""")


def shot(page, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def figure_titles(page) -> list[str]:
    return [f["title"] for f in page.evaluate(FIGURES_JS)]


def figures(page) -> list[dict]:
    return page.evaluate(FIGURES_JS)


def errors(page) -> list[str]:
    """Texts of Streamlit exception boxes and error alerts on the page."""
    return page.evaluate(ERRORS_JS)


def wait_for_figure(page, title_part: str, timeout: float = 90.0, changed_from: str | None = None) -> dict:
    """The first figure whose title contains ``title_part`` (and whose data differ from ``changed_from``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for f in page.evaluate(FIGURES_JS):
            if title_part in f["title"] and f["sig"] != changed_from:
                return f
        time.sleep(0.25)
    raise AssertionError(f"no figure titled like {title_part!r} within {timeout} s; have {figure_titles(page)}")


# the figures a finished Train page draws in place of its live views (words of their titles)
FINAL_TRAIN_FIGURES = ("test error", "training loss", "filters", "reconstructions")


def wait_for_final_figures(page, words=FINAL_TRAIN_FIGURES, timeout: float = 30.0) -> list[str]:
    """Wait until, for every word, some figure's title holds it; the titles (lowercase), or AssertionError."""
    deadline = time.time() + timeout
    while True:
        titles = [f["title"].lower() for f in page.evaluate(FIGURES_JS)]
        if all(any(w in t for t in titles) for w in words):
            return titles
        if time.time() >= deadline:
            raise AssertionError(f"within {timeout} s the page drew {titles}; it lacks a figure for "
                                 f"{[w for w in words if not any(w in t for t in titles)]}")
        time.sleep(0.3)


def wait_for_text(page, text: str, timeout: float = 60.0) -> None:
    page.get_by_text(text).first.wait_for(timeout=timeout * 1000)
