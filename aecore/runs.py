"""The run store: run folders (see ``checkpoint``) under one root, indexed in SQLite.

    store = RunStore()                       # $AECORE_RUNS or ~/.cache/aecore/runs
    run_id = store.start(model_cfg, train_cfg)   # row marked 'running'
    store.finish(run_id, model, metrics, history, data_info)   # folder written atomically
    store.fail(run_id, reason)
    store.list(); store.load(run_id)

A run that was 'running' in a process that no longer exists is marked 'interrupted' when a
store is opened, and the half-written folder of a process killed while saving is removed, so a
server killed mid-training leaves a consistent index and no partial files.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path

from .checkpoint import CheckpointError, LoadedRun, load_run, save_run

__all__ = ["RunStore", "runs_root", "sanitize_name"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT, created REAL, finished REAL, status TEXT, pid INTEGER,
    variant TEXT, dataset TEXT, code_size INTEGER, config TEXT, metrics TEXT, reason TEXT, owner TEXT,
    session TEXT
)"""

ALL = object()  # ``list(session=ALL)``: every session's runs

_COLUMNS = [(part.split()[0], part.split()[1]) for part in
            _SCHEMA.split("(", 1)[1].rsplit(")", 1)[0].replace("\n", " ").split(",")]

# identifies this process: a restarted server in a container often gets the same pid back
_PROCESS_TOKEN = uuid.uuid4().hex


def runs_root() -> Path:
    env = os.environ.get("AECORE_RUNS")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("AECORE_CACHE")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "aecore") / "runs"


def sanitize_name(name: str, max_len: int = 48) -> str:
    """Keep letters, digits, '-' and '_' (no path separators, no dots): safe as a folder name."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(name)).strip("-_")[:max_len]
    return slug or "run"


def _load_json(text: str | None) -> dict:
    """A JSON column of the index; a damaged one reads as empty instead of hiding every run."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else runs_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._db() as db:
            db.execute(_SCHEMA)
            # an index written by an older version lacks newer columns: add them (rows keep NULL)
            have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in _COLUMNS:
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            rows = db.execute("SELECT id, pid, owner FROM runs WHERE status = 'running'").fetchall()
            for run_id, pid, owner in rows:
                same_pid_other_process = pid == os.getpid() and owner != _PROCESS_TOKEN
                if same_pid_other_process or (pid != os.getpid() and not _pid_alive(pid or 0)):
                    db.execute("UPDATE runs SET status = 'interrupted', reason = ? WHERE id = ?",
                               ("the process running it ended before it finished", run_id))
        self.sweep_partials()

    def sweep_partials(self) -> list[Path]:
        """Remove the temporary folders and files (``.<name>.<pid>.<hex>.partial`` / ``.tmp``) that
        a process killed while saving left in the root; those of live processes stay."""
        removed = []
        for p in [*self.root.glob(".*.partial"), *self.root.glob(".*.tmp")]:
            parts = p.name.rsplit(".", 3)
            pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
            if pid is None or pid == os.getpid() or _pid_alive(pid):
                continue  # not ours to judge, or a writer that may still be at work
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        return removed

    def _db(self):
        con = sqlite3.connect(self.root / "index.sqlite", timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return _Tx(con)

    def path(self, run_id: str) -> Path:
        safe = sanitize_name(run_id, 120)
        if safe != run_id:
            raise CheckpointError(f"run id {run_id!r} is not a valid run id")
        return self.root / run_id

    def start(self, model_cfg, train_cfg, name: str | None = None, session: str | None = None) -> str:
        """Record a new run as running; ``session`` (a dashboard session's token, None for the CLI
        and scripts) decides who sees it in ``list(session=...)``."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = sanitize_name(name or f"{model_cfg.variant}-K{model_cfg.code_size}")
        run_id = f"{stamp}-{label}-{uuid.uuid4().hex[:6]}"
        cfg = json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict()})
        with self._lock, self._db() as db:
            db.execute("INSERT INTO runs (id, name, created, status, pid, owner, variant, dataset, code_size, config, "
                       "session) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                       (run_id, label, time.time(), os.getpid(), _PROCESS_TOKEN, model_cfg.variant,
                        train_cfg.dataset, model_cfg.code_size, cfg, session))
        return run_id

    def finish(self, run_id: str, model_cfg, train_cfg, model, metrics: dict, history=(),
               data_info: dict | None = None, status: str = "finished") -> Path:
        path = save_run(self.path(run_id), model_cfg, train_cfg, model, metrics, history, data_info)
        with self._lock, self._db() as db:
            db.execute("UPDATE runs SET status = ?, finished = ?, metrics = ? WHERE id = ?",
                       (status, time.time(), json.dumps(metrics, default=float), run_id))
        return path

    def fail(self, run_id: str, reason: str, status: str = "failed") -> None:
        """Record why a run ended without its result; a run already saved (finished or stopped)
        keeps its status: its files are there, whatever happened after they were written."""
        with self._lock, self._db() as db:
            db.execute("UPDATE runs SET status = ?, finished = ?, reason = ? WHERE id = ? AND status = 'running'",
                       (status, time.time(), reason, run_id))

    def list(self, status: str | None = None, session: str | None = ALL) -> list[dict]:
        """Runs, newest first. ``session``: ``ALL`` (default) every run; a session token: that
        session's runs and the shared ones (recorded without a session: CLI, scripts); None: only
        the shared ones."""
        q = "SELECT id, name, created, finished, status, variant, dataset, code_size, config, metrics, reason FROM runs"
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if session is not ALL:
            where.append("(session IS NULL OR session = ?)")
            args.append(session)
        if where:
            q += " WHERE " + " AND ".join(where)
        with self._db() as db:
            rows = db.execute(q + " ORDER BY created DESC", args).fetchall()
        keys = ("id", "name", "created", "finished", "status", "variant", "dataset", "code_size", "config",
                "metrics", "reason")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            d["config"] = _load_json(d["config"])
            d["metrics"] = _load_json(d["metrics"])
            out.append(d)
        return out

    def visible_to(self, run_id: str, session: str | None) -> bool:
        """Whether ``session`` may see run ``run_id`` (its own or a shared one; unknown ids: False)."""
        with self._db() as db:
            row = db.execute("SELECT session FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row is not None and (row[0] is None or row[0] == session)

    def load(self, run_id: str, device="cpu") -> LoadedRun:
        return load_run(self.path(run_id), device=device)


class _Tx:
    """``with store._db() as db``: commit on success, roll back on error, always close."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def __enter__(self):
        return self.con

    def __exit__(self, et, ev, tb):
        with closing(self.con):
            if et is None:
                self.con.commit()
            else:
                self.con.rollback()
        return False
