"""A run as one zip file: config, weights, metrics, history and a snippet that reloads it.

    data = export_run_zip(model_cfg, train_cfg, model, metrics, history, data_info)   # bytes
    data = export_loaded_run_zip(store.load(run_id))

The zip holds one folder ``<name>/`` written by ``checkpoint.save_run`` (config.json,
metrics.json, history.csv, model.safetensors) plus ``load_run.py``, which rebuilds the model
with ``aecore.checkpoint.load_run`` and encodes one example. Unzip it and run
``python <name>/load_run.py`` where ``aecore`` is installed.
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from .checkpoint import LoadedRun, save_run
from .runs import sanitize_name

__all__ = ["export_run_zip", "export_loaded_run_zip", "LOAD_SNIPPET"]

LOAD_SNIPPET = '''"""Reload this run with aecore and encode one example: python load_run.py"""
from pathlib import Path

import numpy as np

from aecore.checkpoint import load_run
from aecore.embedding import encode_array, reconstruct_array

run = load_run(Path(__file__).resolve().parent)  # rebuilt through the variant registry, no pickle
print(run.model_cfg)
try:  # an example from the data set the model was trained on, if it is on this machine
    from aecore.data import load

    x = load(run.train_cfg.dataset, download=False).x_test[:1]
except Exception:
    x = np.zeros((1, run.data_info["input_dim"]), dtype=np.float32)
code = encode_array(run.model, x)  # (1, K)
recon = reconstruct_array(run.model, x)  # (1, D)
print("code h:", np.round(code[0], 3))
print("squared error of its reconstruction:", float(np.square(x - recon).sum()))
'''


def export_run_zip(model_cfg, train_cfg, model, metrics: dict | None = None, history=(),
                   data_info: dict | None = None, name: str | None = None) -> bytes:
    """Zip a trained model with its configs (see the module docstring); returns the bytes."""
    folder = sanitize_name(name or f"{model_cfg.variant}-K{model_cfg.code_size}-{train_cfg.dataset}")
    with tempfile.TemporaryDirectory(prefix="aecore-export-") as tmp:
        run_dir = save_run(Path(tmp) / folder, model_cfg, train_cfg, model, dict(metrics or {}), list(history),
                           data_info)
        (run_dir / "load_run.py").write_text(LOAD_SNIPPET)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(run_dir.iterdir()):
                zf.write(path, f"{folder}/{path.name}")
    return buf.getvalue()


def export_loaded_run_zip(run: LoadedRun, name: str | None = None) -> bytes:
    """Zip a saved run (as ``checkpoint.load_run`` / ``RunStore.load`` returns it)."""
    return export_run_zip(run.model_cfg, run.train_cfg, run.model, run.metrics, run.history, run.data_info,
                          name=name or Path(run.path).name)
