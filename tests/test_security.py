"""Security (issue 8): no unpickling of anything a user or a file can supply, run names that cannot
write outside the run store, a browser that can name only registry datasets or its own uploads,
and Streamlit's server settings."""
from __future__ import annotations

import ast
import os
import pickle
import struct
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from aecore import cli
from aecore.checkpoint import CheckpointError, load_run, save_run
from aecore.config import ModelConfig, TrainConfig
from aecore.data import DataError, load_file
from aecore.models import build_model
from aecore.runs import RunStore

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("aecore", "dashboard", "pages")
MC, TC = ModelConfig(variant="sigmoid", code_size=4), TrainConfig(epochs=1)


class Evil:
    """Unpickling this creates ``marker`` (a folder): proof that a payload ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(Evil(tmp_path / "probe")))  # the payload has teeth: unpickling runs it
    assert (tmp_path / "probe").exists()
    yield m
    assert not m.exists(), "a pickle payload ran"


@pytest.fixture
def opened():
    """Paths the process opens or lists while the test runs (a Python audit hook; hooks cannot be
    removed, so it goes quiet after the test)."""
    seen: list[str] = []
    state = {"on": True}

    def hook(event, args):
        if state["on"] and event in ("open", "os.listdir", "os.scandir", "shutil.copyfile", "os.mkdir") and args:
            seen.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else repr(args[0]))

    sys.addaudithook(hook)
    yield seen
    state["on"] = False


@pytest.fixture
def run_dir(tmp_path):
    model = build_model(MC, 64, generator=torch.Generator().manual_seed(0))
    return save_run(tmp_path / "run", MC, TC, model, {"test_mse": 0.1}, [{"step": 1, "loss": 1.0}])


# --- no pickle: torch.load only with weights_only=True -----------------------------------------------------
def unsafe_loads(source: str) -> list[str]:
    """Calls in ``source`` that may unpickle: ``torch.load`` without ``weights_only=True``, pickle /
    joblib / dill loads, ``np.load(..., allow_pickle=True)``, ``torch.serialization.load``."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        true = lambda k: isinstance(kw.get(k), ast.Constant) and kw[k].value is True  # noqa: E731
        if name in ("torch.load", "torch.serialization.load"):
            if not true("weights_only"):
                bad.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif name.split(".")[-1] in ("load", "loads", "Unpickler") and name.split(".")[0] in (
                "pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve"):
            bad.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif name in ("np.load", "numpy.load") and "allow_pickle" in kw and not (
                isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
            bad.append(f"line {node.lineno}: {ast.unparse(node)}")
    return bad


def test_the_scanner_catches_unsafe_loads():
    assert unsafe_loads("import torch\nx = torch.load('m.pt', weights_only=True)\n") == []
    assert unsafe_loads("np.load(p, allow_pickle=False)\nnp.load(p)\n") == []
    for src in ("torch.load('m.pt')", "torch.load(p, weights_only=False)", "torch.load(p, weights_only=flag)",
                "pickle.load(f)", "pickle.loads(b)", "joblib.load(p)", "np.load(p, allow_pickle=True)",
                "torch.serialization.load(p)"):
        assert len(unsafe_loads(src)) == 1, src


def test_no_source_file_loads_a_pickle():
    files = [p for d in SOURCES for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 30
    found = {str(p.relative_to(REPO)): bad for p in files if (bad := unsafe_loads(p.read_text()))}
    assert found == {}
    # and no torch.load( that the parser might miss (in a string that is exec'd, say)
    text_hits = [str(p.relative_to(REPO)) for p in files
                 if "torch.load(" in (t := p.read_text()) and "weights_only=True" not in t]
    assert text_hits == []


def test_torch_load_with_weights_only_refuses_a_payload(tmp_path, marker):
    p = tmp_path / "model.pt"
    torch.save({"state": Evil(marker)}, p)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(p, weights_only=True)


# --- crafted checkpoints ----------------------------------------------------------------------------------
def _torch_payload(tmp_path, marker) -> bytes:
    p = tmp_path / "payload.pt"
    torch.save({"enc.weight": Evil(marker)}, p)
    return p.read_bytes()


def _safetensors_with_header(header: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + b"\0" * 64


@pytest.mark.parametrize("payload", ["pickle", "torch-save", "garbage-header", "huge-header-length",
                                     "header-with-pickle", "offsets-past-the-end"])
def test_a_crafted_weights_file_is_refused_and_never_runs(payload, run_dir, tmp_path, marker, capsys):
    weights = run_dir / "model.safetensors"
    data = {
        "pickle": lambda: pickle.dumps({"enc.weight": Evil(marker)}),
        "torch-save": lambda: _torch_payload(tmp_path, marker),
        "garbage-header": lambda: _safetensors_with_header(b"{this is not json \xff\xfe"),
        "huge-header-length": lambda: _safetensors_with_header(b"{}", length=2**62),
        "header-with-pickle": lambda: _safetensors_with_header(pickle.dumps(Evil(marker))),
        "offsets-past-the-end": lambda: _safetensors_with_header(
            b'{"W": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 40000000000]}}'),
    }[payload]()
    weights.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"model\.safetensors (is not a readable safetensors file|does not match)"):
        load_run(run_dir)
    assert cli.main(["show", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "Traceback" not in err


@pytest.mark.parametrize("fname", ["model.pt", "model.pkl", "model.bin"])
def test_a_run_folder_with_a_pickled_model_instead_of_safetensors_is_refused_unopened(
        fname, run_dir, tmp_path, marker, opened):
    (run_dir / "model.safetensors").unlink()
    payload = run_dir / fname
    payload.write_bytes(_torch_payload(tmp_path, marker) if fname != "model.pkl" else pickle.dumps(Evil(marker)))
    opened.clear()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing from run folder"):
        load_run(run_dir)
    assert not any(Path(p).name == fname for p in opened)  # the pickle was never even opened


def test_a_pickled_user_array_is_refused_and_never_runs(tmp_path, marker):
    for name in ("data.npy", "data.npz"):
        p = tmp_path / name
        arr = np.array([Evil(marker), 1], dtype=object)
        if name.endswith(".npy"):
            np.save(p, arr, allow_pickle=True)
        else:
            np.savez(p, x=arr)
        with pytest.raises(DataError, match=rf"{name}"):
            load_file(p)


# --- run names cannot escape the store ------------------------------------------------------------------------
NAMES = ["../../x", "/etc/passwd", "a\x00b", "x" * 5000, "..", ".", "~", "~/.bashrc", r"C:\Windows\x",
         "runs/../../../tmp/evil", "%2e%2e%2fx", "a/b/c", "\n\r\t", "ü" * 40, "", "-", ".hidden", "name.with.dots",
         "con", "$(touch pwned)", "'; DROP TABLE runs; --"]


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:24] for n in NAMES])
def test_run_names_are_sanitized_and_nothing_lands_outside_the_store(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative escape would land here
    root = tmp_path / "deep" / "store" / "runs"
    store = RunStore(root)
    before = _tree(tmp_path)
    model = build_model(MC, 64, generator=torch.Generator().manual_seed(0))
    run_id = store.start(MC, TC, name=name)
    path = store.finish(run_id, MC, TC, model, {"test_mse": 0.5}, [{"step": 1, "loss": 1.0}])
    new = _tree(tmp_path) - before
    assert new and all(root in p.parents for p in new), sorted(map(str, new - {p for p in new if root in p.parents}))
    assert path.parent == root and path.name == run_id
    assert len(run_id) <= 80 and all(c.isalnum() and c.isascii() or c in "-_" for c in run_id)
    (row,) = store.list()
    assert row["id"] == run_id and row["status"] == "finished" and "/" not in row["name"] and "\0" not in row["name"]
    assert store.load(run_id).metrics["test_mse"] == 0.5


@pytest.mark.parametrize("bad_id", ["../../x", "/etc/passwd", "a\x00b", "..", "x/../../y", "", "run id"])
def test_a_run_id_that_is_not_one_is_refused_before_any_file_is_touched(bad_id, tmp_path, opened):
    store = RunStore(tmp_path / "runs")
    opened.clear()
    with pytest.raises(CheckpointError, match="is not a valid run id"):
        store.load(bad_id)
    model = build_model(MC, 64)
    with pytest.raises(CheckpointError, match="is not a valid run id"):
        store.finish(bad_id, MC, TC, model, {})
    assert not any("passwd" in p or p.endswith("/x") or p.endswith("/y") for p in opened)
    assert _tree(tmp_path / "runs") == {tmp_path / "runs" / n for n in os.listdir(tmp_path / "runs")}
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


# --- the browser names only registry datasets and its own uploads ---------------------------------------------
FORGED = ["/etc/passwd", "../../x", "~/.ssh/id_rsa", "file:///etc/passwd", "digits/../../x", "digits\x00",
          "upload:0123456789ab:../../etc/passwd", "upload:0123456789ab:data.npy", "http://127.0.0.1:1/x.npy"]


@pytest.mark.parametrize("value", FORGED, ids=[repr(v)[:30] for v in FORGED])
def test_a_dataset_query_param_that_is_not_a_registry_name_is_rejected_and_never_opened(value, at, opened,
                                                                                      monkeypatch):
    import dashboard.state as state

    asked = []
    real = state.load
    monkeypatch.setattr(state, "load", lambda name, *a, **kw: (asked.append(name), real(name, *a, **kw))[1])
    at.query_params["dataset"] = value
    at.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "URL parameter dataset=" in warnings and "ignored" in warnings
    assert at.session_state["train_cfg"].dataset == "digits"
    assert at.query_params["dataset"] == "digits"
    assert asked in ([], ["digits"])
    tail = value.rsplit("/", 1)[-1]
    assert not any(p.endswith(("passwd", "id_rsa", "/x", "/x.npy", "data.npy")) or p.endswith("/" + tail)
                   for p in opened), [p for p in opened if tail in p]
    assert any(p.endswith(("app.py", "train.py")) for p in opened)  # the hook did see the app's own files
    at.button(key="train_start")  # the page is still there and usable


def test_no_page_offers_a_text_box_for_a_server_path():
    hits = []
    for p in sorted((REPO / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("text_input") and node.args:
                label = ast.unparse(node.args[0]).lower()
                if any(w in label for w in ("path", "folder", "directory", "file")):
                    hits.append(f"{p.name}:{node.lineno}")
    assert hits == []


# --- Streamlit server settings --------------------------------------------------------------------------------
def test_streamlit_config_keeps_the_server_locked_down():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = cfg.get("server", {})
    assert server.get("enableXsrfProtection") is True
    assert isinstance(server.get("maxUploadSize"), int) and 1 <= server["maxUploadSize"] <= 200
    assert cfg.get("browser", {}).get("gatherUsageStats") is False
    assert server.get("enableCORS", True) is True  # CORS protection not switched off
    origins = server.get("corsAllowedOrigins", [])
    assert "*" not in origins and not any("*" in o for o in origins)
    # nothing else in the file turns a protection off or opens the server to the world
    assert cfg.get("global", {}).get("developmentMode", False) is False
    assert server.get("enableStaticServing", False) is False
