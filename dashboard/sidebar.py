"""The shared sidebar: widgets -> (ModelConfig, TrainConfig), built once per run in ``app.py``.

The configs are stored in ``st.session_state["model_cfg"]`` / ``["train_cfg"]`` (None while the
settings are invalid); pages read them with ``current_configs()``. Settings also live in the URL
query parameters, so a shared link opens with the same variant, K and λ: they are read on the
first run of a session (bad values are dropped with a warning) and written back on every run.

Widget keys are stable (``sb_<field>``); the query parameter names are in ``PARAMS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import streamlit as st
import torch

from aecore.config import ACTIVATIONS, LOSSES, MAX_CODE_SIZE, MAX_EPOCHS, NOISES, OUTPUTS, OUTPUT_BIASES, PRECISIONS, ConfigError, ModelConfig, \
    TrainConfig
from aecore.augment import check_shift
from aecore.data import DataError
from aecore.kernels import bf16_warning
from aecore.registry import get_variant, variant_names

from . import limits
from . import uploads
from .state import UPLOADS_KEY, cuda_status, datasets_info, load_dataset

__all__ = ["sidebar", "current_configs", "configs_and_data", "apply_settings", "PARAMS", "parse_hidden", "MODEL_KEY", "TRAIN_KEY"]

MODEL_KEY, TRAIN_KEY = "model_cfg", "train_cfg"
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_VARIANT = "sigmoid"
# what trains in a few seconds on digits and already looks good
GENERAL_DEFAULTS = {"sb_dataset": "digits", "sb_code_size": 16, "sb_epochs": 30, "sb_lr": 1e-2, "sb_batch": 64,
                    "sb_seed": 0, "sb_device": "auto", "sb_precision": "float32",
                    "sb_augment_shift": 0, "sb_output_bias": "data"}
_INIT_FLAG, _WARN_KEY = "_sb_initialized", "_sb_query_warnings"


class _Bad(ValueError):
    pass


class _Capped(_Bad):
    """A value above a per-session cap: the URL gets the cap instead (``value``), with a warning."""

    def __init__(self, msg: str, value: int):
        super().__init__(msg)
        self.value = value


_ABSOLUTE = {"code_size": MAX_CODE_SIZE, "epochs": MAX_EPOCHS}


def _cap(field: str) -> int:
    """The per-session cap on K or epochs (``dashboard.limits``), never above the library's own."""
    return min(getattr(limits.current(), field), _ABSOLUTE[field])


def _capped(field: str) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise _Bad(f"{s!r} is not a whole number") from None
        if v < 1:
            raise _Bad(f"{v} must be >= 1")
        cap = _cap(field)
        if v > cap:
            raise _Capped(f"{v:,} is above this server's limit of {cap:,} ({limits.ENV[field]}); using {cap:,}", cap)
        return v
    return parse


def parse_hidden(text: str) -> tuple[int, ...]:
    """'256,128' -> (256, 128); '' -> (). Raises ValueError naming the bad text."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if parts == [""]:
        return ()
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of whole numbers such as 256,128") from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"{text!r}: every layer size must be >= 1")
    return sizes


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise _Bad(f"{s!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise _Bad(f"{v} is outside [{lo}, {hi}]")
        return v
    return parse


def _float(lo: float, hi: float = math.inf, lo_open: bool = False) -> Callable[[str], float]:
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise _Bad(f"{s!r} is not a number") from None
        if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
            raise _Bad(f"{s} is outside the allowed range")
        return v
    return parse


def _choice(options_fn: Callable[[], Any]) -> Callable[[str], str]:
    def parse(s: str) -> str:
        options = list(options_fn())
        if s not in options:
            raise _Bad(f"{s!r} is not one of {', '.join(options)}")
        return s
    return parse


def _bool(s: str) -> bool:
    low = s.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise _Bad(f"{s!r} is not true/false")


def _hidden_param(s: str) -> str:
    try:
        return ",".join(map(str, parse_hidden(s)))
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return format(v, ".10g")
    return str(v)


@dataclass(frozen=True)
class Param:
    name: str           # in the URL
    key: str            # widget key
    parse: Callable[[str], Any]
    uses: str | None = None  # shown only when the variant's spec.uses contains this


def _dataset_names() -> list[str]:
    return [d["name"] for d in datasets_info()]


PARAMS: tuple[Param, ...] = (
    Param("dataset", "sb_dataset", _choice(_dataset_names)),
    Param("variant", "sb_variant", _choice(variant_names)),
    Param("K", "sb_code_size", _capped("code_size")),
    Param("act", "sb_activation", _choice(lambda: ACTIVATIONS)),
    Param("out", "sb_output", _choice(lambda: OUTPUTS)),
    Param("tied", "sb_tied", _bool),
    Param("loss", "sb_loss", _choice(lambda: LOSSES)),
    Param("reg", "sb_reg", _float(0.0), uses="reg"),
    Param("noise", "sb_noise", _choice(lambda: NOISES), uses="noise"),
    Param("level", "sb_noise_level", _float(0.0), uses="noise"),
    Param("hidden", "sb_hidden", _hidden_param, uses="hidden"),
    Param("beta", "sb_beta", _float(0.0), uses="beta"),
    Param("epochs", "sb_epochs", _capped("epochs")),
    Param("lr", "sb_lr", _float(0.0, 10.0, lo_open=True)),
    Param("batch", "sb_batch", _int(1, 1_000_000)),
    Param("seed", "sb_seed", _int(0, 2**31 - 1)),
    Param("device", "sb_device", _choice(lambda: DEVICES)),
    Param("precision", "sb_precision", _choice(lambda: PRECISIONS)),
    Param("shift", "sb_augment_shift", _int(0, 1000)),
    Param("obias", "sb_output_bias", _choice(lambda: OUTPUT_BIASES)),
)
_BY_KEY = {p.key: p for p in PARAMS}


def _variant_defaults(variant: str) -> dict[str, Any]:
    """Widget values for a variant's own defaults (activation, loss, λ, noise, hidden...)."""
    cfg = ModelConfig(variant=variant)
    return {"sb_activation": cfg.activation, "sb_output": cfg.output, "sb_tied": cfg.tied, "sb_loss": cfg.loss,
            "sb_reg": float(cfg.reg), "sb_noise": cfg.noise, "sb_noise_level": float(cfg.noise_level),
            "sb_hidden": ",".join(map(str, cfg.hidden)), "sb_beta": float(cfg.beta)}


def _on_variant_change() -> None:
    # a new variant starts from its own defaults (the sparse one's λ, the deep one's layers...)
    for key, value in _variant_defaults(st.session_state["sb_variant"]).items():
        st.session_state[key] = value


def _read_query_params() -> None:
    """First run of a session: defaults, then every valid query parameter; bad ones are dropped."""
    ss, qp = st.session_state, st.query_params
    warnings: list[str] = []

    def take(p: Param):
        raw = qp.get(p.name)
        if raw is None:
            return None
        try:
            return p.parse(raw)
        except _Capped as exc:
            warnings.append(f"URL parameter {p.name}={raw!r}: {exc}.")
            return exc.value
        except _Bad as exc:
            warnings.append(f"URL parameter {p.name}={raw!r} ignored: {exc}.")
            del qp[p.name]
            return None

    variant = take(_BY_KEY["sb_variant"])
    ss["sb_variant"] = variant or DEFAULT_VARIANT
    ss.update(_variant_defaults(ss["sb_variant"]))
    ss.update(GENERAL_DEFAULTS)
    for p in PARAMS:
        if p.key == "sb_variant":
            continue
        value = take(p)
        if value is not None:
            ss[p.key] = value
    ss[_WARN_KEY] = warnings
    ss[_INIT_FLAG] = True


def _write_query_params(uses: tuple[str, ...]) -> None:
    """Mirror the current settings into the URL (only the parameters the variant uses)."""
    ss, qp = st.session_state, st.query_params
    for p in PARAMS:
        if p.uses is None or p.uses in uses:
            value = _fmt(ss.get(p.key) if p.key != "sb_dataset" else _chosen_dataset())
            if p.key == "sb_dataset" and uploads.is_upload_name(value):  # an upload is this session's only
                qp.pop(p.name, None)
                continue
            if qp.get(p.name) != value:
                qp[p.name] = value
        elif p.name in qp:
            del qp[p.name]


def _ensure(key: str) -> None:
    """Restore a widget's value after Streamlit dropped it (a widget that was hidden for a run)."""
    if key not in st.session_state:
        defaults = {**_variant_defaults(st.session_state.get("sb_variant", DEFAULT_VARIANT)), **GENERAL_DEFAULTS}
        st.session_state[key] = defaults[key]


def apply_settings(settings: dict[str, Any]) -> None:
    """Set the sidebar from outside (a preset), from a widget callback before the sidebar draws:
    the variant's own defaults first, then ``settings`` (widget keys ``sb_<field>``; unknown keys
    raise). The sidebar mirrors them into the URL on the same run."""
    unknown = sorted(set(settings) - set(_BY_KEY))
    if unknown:
        raise KeyError(f"unknown sidebar setting(s) {', '.join(unknown)}; known: {', '.join(_BY_KEY)}")
    ss = st.session_state
    variant = settings.get("sb_variant", ss.get("sb_variant", DEFAULT_VARIANT))
    ss.update(_variant_defaults(variant))
    ss["sb_variant"] = variant
    ss.update(settings)
    ss[_INIT_FLAG] = True


def _dataset_label(info: dict) -> str:
    return f"{info['name']}" + ("" if info.get("available_offline") else " (downloads on first use)")


# --- the data set: a registry name, or a file this session uploaded (dashboard.uploads) --------------------
UPLOAD_CHOICE = "Upload a file…"
_DATA_KEY = "_sb_data"  # the data set the configs use (the last real choice while "Upload a file…" is open)
_UPLOAD_SESSION, _UPLOAD_N, _UPLOAD_MSG = "_sb_upload_session", "_sb_upload_n", "_sb_upload_msg"


def _chosen_dataset() -> str:
    ss = st.session_state
    name = ss.get(_DATA_KEY) or GENERAL_DEFAULTS["sb_dataset"]
    if uploads.is_upload_name(name) and name not in ss.get(UPLOADS_KEY, {}):
        name = GENERAL_DEFAULTS["sb_dataset"]
    return name


def _on_upload(key: str) -> None:
    """Store the uploaded file, load it through aecore and make it the data set; any problem becomes
    a one-line message (the previous data set stays chosen)."""
    import logging

    ss = st.session_state
    f = ss.get(key)
    if f is None:  # the file was removed from the uploader
        return
    session_key = ss.setdefault(_UPLOAD_SESSION, uploads.new_session_key())
    up = None
    try:
        up = uploads.save_upload(f, f.name, session_key)
        ds = uploads.load_upload(up)
    except DataError as exc:
        if up is not None:
            uploads.discard(up)
        ss[_UPLOAD_MSG] = ("error", f"Could not use the upload: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - a parser bug must not show a traceback; it is logged
        if up is not None:
            uploads.discard(up)
        logging.getLogger(__name__).exception("upload %r failed", getattr(f, "name", "?"))
        ss[_UPLOAD_MSG] = ("error", f"Could not use the upload '{uploads.display_name(f.name)}': "
                                    f"{type(exc).__name__} while reading it")
        return
    mine = ss.setdefault(UPLOADS_KEY, {})
    mine[up.dataset_name] = (up, ds)
    while len(mine) > uploads.KEEP:  # the oldest upload's file is gone from disk too
        mine.pop(next(iter(mine)))
    ss[_DATA_KEY] = ss["sb_dataset"] = up.dataset_name
    ss[_UPLOAD_N] = ss.get(_UPLOAD_N, 0) + 1  # a fresh, empty uploader next time
    labels = f", labels of {len(np.unique(ds.y_train))} classes" if ds.y_train is not None else ""
    ss[_UPLOAD_MSG] = ("success", f"Loaded '{up.display}': {ds.n_train} training and {ds.n_test} test "
                                  f"examples of shape {'×'.join(map(str, ds.shape))} ({ds.kind}){labels}.")


def _dataset_choice(sb, infos: dict) -> None:
    """The data set select box; "Upload a file…" opens a file uploader below it."""
    ss = st.session_state
    mine = ss.get(UPLOADS_KEY, {})
    options = list(infos) + list(mine) + [UPLOAD_CHOICE]
    if ss["sb_dataset"] not in options:
        ss["sb_dataset"] = GENERAL_DEFAULTS["sb_dataset"]

    def label(name: str) -> str:
        if name in infos:
            return _dataset_label(infos[name])
        if name in mine:
            return f"{mine[name][0].display} (uploaded)"
        return name

    sb.selectbox("Data set", options, key="sb_dataset", format_func=label,
                 help="digits (8×8) is bundled and trains in seconds; MNIST and Fashion-MNIST (28×28) "
                      "are downloaded once into the cache. Or upload your own .npy / .npz / .csv array, "
                      "or a .zip of PNG/JPEG images (in class folders for labels).")
    if ss["sb_dataset"] != UPLOAD_CHOICE:
        ss[_DATA_KEY] = ss["sb_dataset"]
    else:
        key = f"sb_upload_{ss.get(_UPLOAD_N, 0)}"
        sb.file_uploader("Your data file", type=[s.lstrip(".") for s in uploads.DATA_SUFFIXES], key=key,
                         on_change=_on_upload, args=(key,),
                         help=".npy / .npz: an (N, D) or (N, H, W) array (.npz: x and optional y); .csv: numbers, "
                              "an optional header, a label column named label/class/y; .zip: PNG/JPEG images of "
                              f"one size. Up to {uploads.max_upload_bytes() >> 20} MB.")
        sb.caption(f"Until a file loads, the settings use **{label(_chosen_dataset())}**.")
    kind, msg = ss.pop(_UPLOAD_MSG, (None, None))
    if kind == "error":
        sb.error(msg)
    elif kind == "success":
        sb.success(msg)


def sidebar() -> tuple[ModelConfig, TrainConfig] | None:
    """Draw the settings and return the configs (None, with st.error, when they are invalid)."""
    ss = st.session_state
    if not ss.get(_INIT_FLAG):
        _read_query_params()
    for key in _BY_KEY:
        _ensure(key)
    sb = st.sidebar
    for msg in ss.pop(_WARN_KEY, []):
        sb.warning(msg)

    infos = {d["name"]: d for d in datasets_info()}
    for key, field in (("sb_code_size", "code_size"), ("sb_epochs", "epochs")):  # a preset above the cap
        if isinstance(ss.get(key), int) and ss[key] > _cap(field):
            sb.warning(f"{key[3:].replace('_', ' ')} {ss[key]:,} is above this server's limit; using {_cap(field):,}.")
            ss[key] = _cap(field)
    names = variant_names()
    if ss["sb_variant"] not in names:
        ss["sb_variant"] = DEFAULT_VARIANT

    sb.header("Settings")
    _dataset_choice(sb, infos)
    sb.selectbox("Variant", names, key="sb_variant", on_change=_on_variant_change,
                 help="\n\n".join(f"**{n}**: {get_variant(n).summary}" for n in names))
    spec = get_variant(ss["sb_variant"])
    sb.caption(spec.summary)
    sb.number_input("Code size K", min_value=1, max_value=_cap("code_size"), step=1, key="sb_code_size",
                    help="Number of code units h (the bottleneck). K = 2 lets the Latent page plot codes directly.")

    with sb.expander("Model", expanded=False):
        st.selectbox("Activation", ACTIVATIONS, key="sb_activation",
                     help="Nonlinearity of the hidden units (the code layer of a deep stack stays linear).")
        st.selectbox("Output", OUTPUTS, key="sb_output", help="Output layer: sigmoid for pixels in [0, 1].")
        st.checkbox("Tied weights (W* = Wᵀ)", key="sb_tied", help="The decoder reuses the encoder's weights.")
        st.selectbox("Loss", LOSSES, key="sb_loss",
                     help="cross-entropy needs a sigmoid output and pixels in [0, 1]; squared works for any data.")
    hidden_text = None
    if "reg" in spec.uses:
        sb.number_input("Regularization λ", min_value=0.0, step=0.001, format="%g", key="sb_reg",
                        help="Weight of the penalty: L1 on the code (sparse) or ‖∂h/∂x‖²_F (contractive).")
    if "noise" in spec.uses:
        sb.selectbox("Input noise", NOISES, key="sb_noise",
                     help="Corrupt the input during training; the target stays the clean example.")
        sb.number_input("Noise level", min_value=0.0, step=0.05, format="%g", key="sb_noise_level",
                        help="Standard deviation for gaussian; fraction of pixels for masking and salt-pepper.")
    if "hidden" in spec.uses:
        hidden_text = sb.text_input("Hidden layer sizes", key="sb_hidden",
                                    help="Comma-separated sizes from the input inwards, e.g. 256,128; "
                                         "the decoder mirrors them.")
    if "beta" in spec.uses:
        sb.number_input("β (weight of the KL term)", min_value=0.0, step=0.1, format="%g", key="sb_beta",
                        help="β = 1 is the ELBO; larger β pulls codes towards the prior.")

    with sb.expander("Training", expanded=True):
        st.number_input("Epochs", min_value=1, max_value=_cap("epochs"), step=1, key="sb_epochs",
                        help=f"At most {_cap('epochs'):,} epochs and {limits.current().steps:,} steps per job "
                             f"on this server.")
        st.number_input("Learning rate", min_value=1e-6, max_value=10.0, step=1e-3, format="%g", key="sb_lr",
                        help="Adam's step size. 1e-2 suits digits; lower it if the loss diverges.")
        st.number_input("Batch size", min_value=1, max_value=1_000_000, step=16, key="sb_batch")
        st.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key="sb_seed",
                        help="Same seed + same settings = same run.")
        st.number_input("Random shifts (pixels)", min_value=0, max_value=1000, step=1, key="sb_augment_shift",
                        help="Move each training image by a random offset of up to this many pixels (input and "
                             "target alike): more training images, less memorising. Images only; 0 = off.")
        st.selectbox("Device", DEVICES, key="sb_device")
        st.caption(cuda_status())
        st.selectbox("Precision", PRECISIONS, key="sb_precision",
                     help="bfloat16 = mixed precision: matrix products in bfloat16, weights and losses in "
                          "float32. On CPUs with bfloat16 units (AVX512-BF16, AMX) 0.9-1.7x float32's speed for "
                          "MNIST-sized layers, most for big ones; for small layers (the digits set) about a third "
                          "of it; without such units much slower. Errors differ from float32 in the third digit.")
        on_cpu = st.session_state.get("sb_device") == "cpu" or not torch.cuda.is_available()
        if st.session_state.get("sb_precision") == "bfloat16" and on_cpu and (slow := bf16_warning()):
            st.caption(f"⚠️ bfloat16 on the CPU: {slow}.")
        st.selectbox("Output bias starts at", OUTPUT_BIASES, key="sb_output_bias",
                     format_func={"data": "data (the mean input)", "init": "init (the model's own)"}.get,
                     help="data: the decoder's output bias starts at the training data's mean (its log-odds "
                          "for a sigmoid output), so training starts from the mean image instead of grey; the "
                          "VAE's -ELBO on MNIST is 8 nats lower after one epoch. init: zeros for the "
                          "autoencoders, nn.Linear's uniform draw for the VAE (as pytorch/examples).")

    try:
        hidden = parse_hidden(hidden_text) if hidden_text is not None else ()
    except ValueError as exc:
        sb.error(f"Hidden layer sizes: {exc}")
        ss[MODEL_KEY] = ss[TRAIN_KEY] = None
        return None
    try:
        uses = spec.uses
        mc = ModelConfig(
            variant=spec.name, code_size=int(ss["sb_code_size"]), activation=ss["sb_activation"],
            output=ss["sb_output"], tied=bool(ss["sb_tied"]), loss=ss["sb_loss"],
            reg=float(ss["sb_reg"]) if "reg" in uses else 0.0,
            noise=ss["sb_noise"] if "noise" in uses else "none",
            noise_level=float(ss["sb_noise_level"]) if "noise" in uses else 0.0,
            hidden=hidden, beta=float(ss["sb_beta"]) if "beta" in uses else 1.0)
        tc = TrainConfig(dataset=_chosen_dataset(), epochs=int(ss["sb_epochs"]), batch_size=int(ss["sb_batch"]),
                         lr=float(ss["sb_lr"]), seed=int(ss["sb_seed"]), device=ss["sb_device"],
                         precision=ss["sb_precision"], augment_shift=int(ss["sb_augment_shift"]),
                         output_bias=ss["sb_output_bias"])
    except (ConfigError, ValueError) as exc:
        sb.error(str(exc))
        ss[MODEL_KEY] = ss[TRAIN_KEY] = None
        return None
    try:
        limits.check_configs(mc, tc)
        info = infos.get(tc.dataset)
        if info and info.get("n_train") and info.get("shape"):
            limits.check_data(mc, tc, int(info["n_train"]), math.prod(info["shape"]))
    except limits.LimitError as exc:
        msg = str(exc)
        sb.error(msg[:1].upper() + msg[1:])
        ss[MODEL_KEY] = ss[TRAIN_KEY] = None
        return None
    why = _shift_problem(tc, infos)
    if why:  # the job would fail on its first step: say so now, by the setting
        sb.error(f"Random shifts (pixels): {why}")
        ss[MODEL_KEY] = ss[TRAIN_KEY] = None
        return None
    ss[MODEL_KEY], ss[TRAIN_KEY] = mc, tc
    _write_query_params(spec.uses)
    return mc, tc


def _shift_problem(tc: TrainConfig, infos: dict) -> str | None:
    """Why random shifts cannot move the chosen data set's examples (an uploaded table, images
    smaller than the shift), or None; the Trainer would refuse the same way."""
    if not tc.augment_shift:
        return None
    hit = st.session_state.get(UPLOADS_KEY, {}).get(tc.dataset)  # (Upload, Dataset) of this session's file
    if hit is not None:
        shape, kind, name = hit[1].shape, hit[1].kind, hit[0].display
    elif tc.dataset in infos and infos[tc.dataset].get("shape"):
        shape, kind, name = tuple(infos[tc.dataset]["shape"]), infos[tc.dataset].get("kind", "image"), tc.dataset
    else:
        return None
    try:
        check_shift(tc.augment_shift, shape, kind, name)
    except ValueError as exc:
        return str(exc)
    return None


def configs_and_data():
    """(model_cfg, train_cfg, dataset) from the sidebar for a page that needs all three; when the
    settings are invalid or the data cannot be loaded it says so and stops the page."""
    configs = current_configs()
    if configs is None:
        st.error("The settings in the sidebar are not valid; fix the field named there first.")
        st.stop()
    ds = load_dataset(configs[1].dataset)  # shows its own progress bar and error
    if ds is None:
        st.stop()
    return configs[0], configs[1], ds


def current_configs() -> tuple[ModelConfig, TrainConfig] | None:
    """The configs the sidebar built on this run (None when the settings are invalid)."""
    mc, tc = st.session_state.get(MODEL_KEY), st.session_state.get(TRAIN_KEY)
    return (mc, tc) if mc is not None and tc is not None else None
