"""Self-describing checkpoints: a run folder holds

    config.json        {"model": ModelConfig, "train": TrainConfig, "data": {name, input_dim, shape, ...}}
    metrics.json       the final metrics
    history.csv        one row per progress event (step, epoch, elapsed, loss, each term)
    model.safetensors  the weights

Loading rebuilds the model through the registry and never unpickles anything.
Writes go to a hidden temporary folder that is renamed into place, so a run folder is
either complete or absent.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ConfigError, ModelConfig, TrainConfig
from .models import build_model

__all__ = ["CheckpointError", "LoadedRun", "save_run", "load_run", "write_atomic"]

FILES = ("config.json", "metrics.json", "history.csv", "model.safetensors")


class CheckpointError(ValueError):
    """A run folder is missing, incomplete or corrupted; the message names the file."""


@dataclass(frozen=True)
class LoadedRun:
    path: Path
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    data_info: dict
    metrics: dict
    history: list
    model: torch.nn.Module


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _history_csv(history) -> str:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    return buf.getvalue()


def save_run(run_dir, model_cfg: ModelConfig, train_cfg: TrainConfig, model: torch.nn.Module,
             metrics: dict, history=(), data_info: dict | None = None) -> Path:
    """Write a complete run folder at ``run_dir`` (which must not exist yet)."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        raise FileExistsError(f"run folder {run_dir} already exists; runs are never overwritten")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets a RunStore sweep what a killed process left (see runs.sweep_partials)
    tmp = run_dir.with_name(f".{run_dir.name}.{os.getpid()}.{uuid.uuid4().hex}.partial")
    tmp.mkdir()
    try:
        config = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "data": dict(data_info or {})}
        config["data"].setdefault("input_dim", int(model.input_dim))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        (tmp / "history.csv").write_text(_history_csv(history))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"variant": model_cfg.variant})
        os.replace(tmp, run_dir)  # the folder appears complete or not at all
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} is missing from run folder {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the run is corrupted") from None


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            if None in row:  # more cells than the header names
                raise ValueError(f"a row has {len(row[None])} cell(s) more than the header")
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in rows]
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as exc:
        raise CheckpointError(f"{path} is not a valid history file ({exc}); the run is corrupted") from None


def load_run(run_dir, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild a saved run through the registry; raise CheckpointError naming any bad file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    config = _read_json(run_dir / "config.json")
    try:
        model_cfg = ModelConfig.from_dict(config["model"])
        train_cfg = TrainConfig.from_dict(config["train"])
        data_info = dict(config.get("data", {}))
        input_dim = int(data_info["input_dim"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{run_dir / 'config.json'} does not describe a model: {exc}") from None
    metrics = _read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    history = _read_history(run_dir / "history.csv")
    weights = run_dir / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"model.safetensors is missing from run folder {run_dir}")
    from .training import resolve_device

    device = resolve_device(str(device))  # a missing GPU is said as such, not as a corrupted run
    try:
        state = load_file(str(weights))  # always onto the CPU first
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc}); the run is corrupted") from None
    # compare shapes on a model built on the 'meta' device (it allocates nothing): a config.json that
    # claims a huge input size or code size must not make the loader allocate it
    try:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in build_model(model_cfg, input_dim).state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{run_dir / 'config.json'} does not describe a model: {exc}") from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        wrong = [f"{k} is {list(got[k])}, expected {list(want[k])}" for k in want if k in got and got[k] != want[k]]
        first = (f"missing tensor(s) {', '.join(missing)}" if missing else
                 f"unexpected tensor(s) {', '.join(extra)}" if extra else wrong[0])
        raise CheckpointError(f"{weights} does not match the model in config.json: {first}")
    model = build_model(model_cfg, input_dim)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{weights} does not match the model in config.json: {first}") from None
    model.to(device).eval()
    return LoadedRun(run_dir, model_cfg, train_cfg, data_info, metrics, history, model)
