"""Frozen, validated configuration: what to build (ModelConfig) and how to train it (TrainConfig).

Messages name the parameter, the bad value and what is allowed (scikit-learn style).
``None`` in a ModelConfig field means "the variant's default"; ``__post_init__`` resolves it
from the registry, so a stored config is always complete and round-trips through JSON.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field, fields

from .registry import get_variant

__all__ = ["ConfigError", "ModelConfig", "TrainConfig", "check_number", "check_choice", "env_int", "ACTIVATIONS", "OUTPUTS", "LOSSES", "NOISES", "PRECISIONS", "OUTPUT_BIASES"]

ACTIVATIONS = ("linear", "sigmoid", "relu", "tanh")
OUTPUTS = ("linear", "sigmoid")
LOSSES = ("squared", "cross-entropy")
NOISES = ("none", "gaussian", "masking", "salt-pepper")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
# float32 everywhere, or bfloat16 mixed precision: matrix products in bfloat16 (autocast), weights,
# optimizer state and losses in float32. 0.9-2.0x float32's speed on CPUs with AVX512-BF16 or AMX
# (BENCHMARKS.md).
PRECISIONS = ("float32", "bfloat16")
# where the decoder's output bias starts: "data" = the training data's mean (its log-odds under a
# sigmoid output; Burda et al. 2016 start the VAE this way), "init" = the model's own initialisation
# (zeros for the autoencoders, nn.Linear's uniform draw for the VAE, as pytorch/examples).
OUTPUT_BIASES = ("data", "init")

# caps that keep a typo from eating the machine; raise them deliberately if needed
MAX_CODE_SIZE = 100_000
MAX_EPOCHS = 100_000


class ConfigError(ValueError):
    """A configuration value is out of range; the message names it."""


def check_choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def _is_bool(value) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def check_number(name, value, lo=None, hi=None, *, integer=False, lo_open=False):
    """Validate a number (numpy scalars accepted) and return it as a plain int / float."""
    kind = "an integer" if integer else "a number"
    if _is_bool(value) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise ConfigError(f"{name}={value!r} must be {kind}")
    value = int(value) if integer else (int(value) if isinstance(value, numbers.Integral) else float(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be finite")
    if isinstance(value, int) and abs(value) > 2**1023:  # past any float: no sensible setting
        raise ConfigError(f"{name}=<a {len(str(abs(value)))}-digit number> is out of range")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise ConfigError(f"{name}={value!r} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}={value!r} must be <= {hi}")
    return value


def env_int(name: str, default: int, lo: int = 1) -> int:
    """A whole-number setting from the environment (``default`` when unset); a bad value is an
    error that names the variable, never silently ignored."""
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be a whole number >= {lo}") from None
    if value < lo:
        raise ValueError(f"{name}={raw!r} must be a whole number >= {lo}")
    return value


def _set_numbers(obj, checks: dict) -> None:
    """Run ``check_number`` for each field and store the plain Python value (JSON-safe)."""
    for name, kwargs in checks.items():
        object.__setattr__(obj, name, check_number(name, getattr(obj, name), **kwargs))


class _Serializable:
    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise ConfigError(f"{cls.__name__} must be built from a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelConfig(_Serializable):
    """What to build. ``reg`` is lambda: L1 weight for ``sparse``, Jacobian weight for
    ``contractive`` (ignored by variants without a regularizer). ``beta`` weighs the VAE's KL."""

    variant: str = "sigmoid"
    code_size: int = 32
    activation: str | None = None
    output: str | None = None
    tied: bool | None = None
    loss: str | None = None
    reg: float | None = None
    noise: str | None = None
    noise_level: float | None = None
    hidden: tuple[int, ...] | None = None
    beta: float = 1.0

    def __post_init__(self):
        try:
            spec = get_variant(self.variant if isinstance(self.variant, str) else repr(self.variant))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        base = dict(activation="sigmoid", output="sigmoid", tied=False, loss="cross-entropy",
                    reg=0.0, noise="none", noise_level=0.0, hidden=())
        base.update(spec.defaults)
        for name, default in base.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if _is_bool(self.tied):
            object.__setattr__(self, "tied", bool(self.tied))
        _set_numbers(self, {"code_size": dict(lo=1, hi=MAX_CODE_SIZE, integer=True), "reg": dict(lo=0.0),
                            "noise_level": dict(lo=0.0), "beta": dict(lo=0.0)})
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("output", self.output, OUTPUTS)
        if not isinstance(self.tied, bool):
            raise ConfigError(f"tied={self.tied!r} must be true or false")
        check_choice("loss", self.loss, LOSSES)
        check_choice("noise", self.noise, NOISES)
        if self.noise in ("masking", "salt-pepper") and self.noise_level > 1:
            raise ConfigError(f"noise_level={self.noise_level!r} is a fraction of inputs for {self.noise} noise; must be <= 1")
        if not isinstance(self.hidden, tuple):
            raise ConfigError(f"hidden={self.hidden!r} must be a list of layer sizes")
        object.__setattr__(self, "hidden", tuple(
            check_number(f"hidden[{i}]", h, 1, MAX_CODE_SIZE, integer=True) for i, h in enumerate(self.hidden)))
        if self.beta != 1.0 and "beta" not in spec.uses:
            raise ConfigError(f"beta={self.beta!r} is not used by variant {self.variant!r}; only 'vae' weighs a KL term")
        if self.tied and "tied" not in spec.uses:
            raise ConfigError(f"tied=True is not supported by variant {self.variant!r}")
        if self.hidden and "hidden" not in spec.uses:
            raise ConfigError(f"hidden={list(self.hidden)} is not used by variant {self.variant!r} (one hidden layer); "
                              f"use variant 'deep' or 'vae' for hidden layers")
        if self.reg > 0 and "reg" not in spec.uses:
            raise ConfigError(f"reg={self.reg!r} is not used by variant {self.variant!r}; "
                              f"variants with a regularizer: sparse, contractive")
        if self.loss == "cross-entropy" and self.output != "sigmoid":
            raise ConfigError(
                f"loss='cross-entropy' needs output='sigmoid' (a Bernoulli mean in [0, 1]); got output={self.output!r}")

    @property
    def spec(self):
        return get_variant(self.variant)


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How to train: data, optimizer, schedule, seed and device."""

    dataset: str = "digits"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    lr_schedule: str = "constant"  # or "cosine": decay to 0 over the run (removes mini-batch jitter at the end)
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "float32"  # or "bfloat16": mixed precision (see PRECISIONS)
    augment_shift: int = 0  # move each training image by up to this many pixels (aecore.augment)
    output_bias: str = "data"  # or "init" (see OUTPUT_BIASES)
    n_train: int | None = None  # use a seeded subset of the training set (None: all)
    snapshot_every: float = 0.5  # seconds of wall clock between snapshots
    progress_every: float = 0.1  # seconds between progress events

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset={self.dataset!r} must be a dataset name or a file path")
        _set_numbers(self, {"epochs": dict(lo=1, hi=MAX_EPOCHS, integer=True),
                            "batch_size": dict(lo=1, hi=1_000_000, integer=True),
                            "lr": dict(lo=0.0, hi=10.0, lo_open=True), "weight_decay": dict(lo=0.0),
                            "seed": dict(lo=0, hi=2**63 - 1, integer=True),
                            "snapshot_every": dict(lo=0.0), "progress_every": dict(lo=0.0),
                            "augment_shift": dict(lo=0, hi=1000, integer=True)})
        if self.n_train is not None:
            _set_numbers(self, {"n_train": dict(lo=2, integer=True)})
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("output_bias", self.output_bias, OUTPUT_BIASES)
