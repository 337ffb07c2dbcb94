"""Shared helpers for the AppTest page tests (the ``at`` fixture itself is in conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def figure(at, title_part: str) -> dict:
    """The first plotly figure whose title contains ``title_part`` (its JSON spec)."""
    for c in at.get("plotly_chart"):
        spec = json.loads(c.proto.spec)
        if title_part in spec["layout"]["title"]["text"]:
            return spec
    raise AssertionError(f"no figure titled like {title_part!r} in {titles(at)}")


def saved_run(variant: str = "linear", k: int = 6, epochs: int = 2) -> str:
    """Train a tiny model headless and save it in the run store the app will open."""
    from aecore.config import ModelConfig, TrainConfig
    from aecore.data import load
    from aecore.runs import RunStore
    from aecore.training import fit

    mc, tc = ModelConfig(variant=variant, code_size=k), TrainConfig(epochs=epochs, lr=1e-2)
    res = fit(mc, tc, load("digits"))
    store = RunStore()
    run_id = store.start(mc, tc)
    store.finish(run_id, mc, tc, res.model, dict(res.metrics), res.history,
                 {"name": "digits", "shape": [8, 8], "input_dim": 64, "value_range": [0.0, 1.0]})
    return run_id
