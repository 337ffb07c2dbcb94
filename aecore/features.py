"""Codes as features: linear probes, and greedy layer-wise pre-training against random init.

Two questions the lecture asks of a code h = f(x):

1. **Is h a better representation for a simple classifier than the raw input?** ``probe``
   trains each autoencoder variant (unsupervised, on all training inputs), then fits a
   logistic regression on the codes of 100, 1,000 and all labelled training examples and
   reports its test accuracy, beside the same probe on PCA scores at the same K and on the
   raw inputs.

2. **Does unsupervised pre-training help a deep network learn from few labels?**
   ``pretrain`` builds D -> hidden... -> classes. Greedy layer-wise pre-training (Bengio et
   al. 2007; Vincent et al. 2010, stacked denoising autoencoders): layer 1 is trained as an
   (optionally denoising) autoencoder on the inputs, layer 2 as one on layer 1's codes, and
   so on; the encoders initialise the network, a classifier head goes on top, and the whole
   network is fine-tuned on 100 or 1,000 labelled examples. The same network from random
   initialisation, trained on the same labelled examples with the same budget, is the
   baseline. Both test-accuracy curves and both sets of first-layer filters are returned.

    res = probe(load("digits"), variants=("sigmoid", "deep"), code_size=16)
    res.accuracy["sigmoid"]["100"], res.accuracy["pca"]["100"], res.accuracy["raw"]["all"]
    pt = pretrain(load("mnist"), PretrainConfig(hidden=(500, 500), labels=(100, 1000)))
    pt.accuracy["pretrained"]["100"], pt.accuracy["random"]["100"], pt.curves["100"]

Each autoencoder is trained by ``aecore.training.fit`` (the lab's trainer); each layer of a
stack is trained on a ``Dataset`` built from the previous layer's codes.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from .config import ConfigError, ModelConfig, TrainConfig, check_choice, check_number

__all__ = ["LABEL_COUNTS", "label_key", "ProbeResult", "probe", "PretrainConfig", "PretrainResult", "pretrain",
           "labelled_subset", "MLPClassifier"]

LABEL_COUNTS = (100, 1000, None)  # None: every training label


def label_key(n: int | None) -> str:
    """The JSON key of a label count: "100", "1000", "all"."""
    return "all" if n is None else str(int(n))


def _check_labels(labels: Sequence[int | None], allow_all: bool = True) -> tuple[int | None, ...]:
    if not isinstance(labels, (tuple, list)) or not labels:
        raise ConfigError(f"labels={labels!r} must be a non-empty list of label counts")
    out = []
    for i, n in enumerate(labels):
        if n is None and allow_all:
            out.append(None)
            continue
        check_number(f"labels[{i}]", n, 1, integer=True)
        out.append(int(n))
    return tuple(out)


def labelled_subset(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of n labelled examples, as equal per class as the counts allow (a class-balanced
    draw, as semi-supervised MNIST-100 uses: 10 per digit); sorted. None or n >= len(y): all."""
    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    base, extra = divmod(n, len(classes))
    want = {c: base for c in classes}
    for c in rng.permutation(classes)[:extra]:
        want[c] += 1
    take, short = [], 0
    for c in classes:
        k = min(want[c], len(pools[c]))
        short += want[c] - k
        take.append(pools[c][:k])
    chosen = np.concatenate(take)
    if short:  # a class had too few examples: fill up from the rest at random
        rest = rng.permutation(np.setdiff1d(np.arange(len(y)), chosen))[:short]
        chosen = np.concatenate([chosen, rest])
    return np.sort(chosen)


def _probe_acc(z_tr, y_tr, z_te, y_te, idx) -> float:
    from threadpoolctl import threadpool_limits

    from .metrics import linear_probe_accuracy

    # one BLAS thread: lbfgs does many small matrix-vector products, and on a shared machine
    # spinning BLAS threads made the digits probe 200x slower (4 s instead of 0.02 s)
    with threadpool_limits(limits=1, user_api="blas"):
        return linear_probe_accuracy(z_tr[idx], y_tr[idx], z_te, y_te)


# =========================================================================== linear probes
@dataclass(frozen=True)
class ProbeResult:
    dataset: str
    code_size: int
    labels: tuple[str, ...]  # "100", "1000", "all"
    accuracy: dict[str, dict[str, float]]  # representation ("raw", "pca", a variant) -> label key -> mean
    accuracy_std: dict[str, dict[str, float]]  # over the ``repeats`` labelled subsets (0 for one)
    train_metrics: dict[str, dict]  # variant -> the trainer's metrics (test_sse, seconds, ...)
    n_train: int
    n_test: int
    seconds: float

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "code_size": self.code_size, "labels": list(self.labels),
                "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
                "train_metrics": {v: {k: m[k] for k in ("test_mse", "test_sse", "train_loss", "seconds") if k in m}
                                  for v, m in self.train_metrics.items()},
                "n_train": self.n_train, "n_test": self.n_test, "seconds": self.seconds}


def probe(data, variants: Sequence[str] = ("sigmoid",), code_size: int = 16,
          labels: Sequence[int | None] = LABEL_COUNTS, epochs: int = 20, lr: float = 1e-2, batch_size: int = 64,
          seed: int = 0, repeats: int = 1, n_train: int | None = None, device: str = "auto",
          include_raw: bool = True, model_overrides: Mapping[str, dict] | None = None,
          on_stage: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> ProbeResult:
    """Linear-probe accuracy of each variant's codes vs PCA at the same K vs the raw inputs.

    ``data`` is an ``aecore.data.Dataset`` with labels. Autoencoders train on every training
    input (or a seeded ``n_train`` subset) without labels, with ``lr_schedule='cosine'``;
    the probe (standardised logistic regression, ``aecore.metrics.linear_probe_accuracy``) sees
    a class-balanced subset of each size in ``labels`` (``None`` = all), the same subset for
    every representation, averaged over ``repeats`` subsets (seeds seed, seed+1, ...).
    ``model_overrides`` maps a variant to extra ModelConfig fields (e.g. ``{"deep": {"hidden": [64]}}``).
    """
    from .baselines import fit_pca
    from .embedding import encode_array
    from .registry import variant_names
    from .training import fit

    if data.y_train is None:
        raise ConfigError(f"dataset {data.name!r} has no labels; a linear probe needs them")
    labels = _check_labels(labels)
    check_number("repeats", repeats, 1, 100, integer=True)
    check_number("code_size", code_size, 1, integer=True)
    known = variant_names()
    for v in variants:
        check_choice("variant", v, tuple(known))
    stage = on_stage or (lambda s: None)
    t0 = time.perf_counter()
    y_tr, y_te = np.asarray(data.y_train), np.asarray(data.y_test)
    n_tr = len(y_tr)
    # the labelled subsets, fixed up front so every representation sees the same examples
    subsets = {label_key(n): [labelled_subset(y_tr, n, seed + r) for r in (range(repeats) if n is not None and n < n_tr
                                                                           else range(1))]
               for n in labels}
    reps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if include_raw:
        reps["raw"] = (data.x_train, data.x_test)
    pca = fit_pca(data.x_train, code_size)
    reps["pca"] = (pca.transform(data.x_train), pca.transform(data.x_test))
    train_metrics = {}
    overrides = dict(model_overrides or {})
    for v in variants:
        if stop is not None and stop.is_set():
            break
        stage(f"training {v} (K={code_size})")
        mc = ModelConfig(variant=v, code_size=code_size, **overrides.get(v, {}))
        if mc.loss == "cross-entropy" and (data.value_range[0] < 0 or data.value_range[1] > 1):
            mc = mc.replace(loss="squared", output="linear")
        tc = TrainConfig(dataset=data.name, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
                         n_train=n_train if n_train is not None and n_train < data.n_train else None,
                         lr_schedule="cosine", snapshot_every=1e9, progress_every=1e9)
        res = fit(mc, tc, data, stop=stop)
        model = res.model.cpu().eval()
        reps[v] = (encode_array(model, data.x_train), encode_array(model, data.x_test))
        train_metrics[v] = dict(res.metrics)
    acc: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for name, (z_tr, z_te) in reps.items():
        stage(f"probing {name}")
        acc[name], std[name] = {}, {}
        for key, idxs in subsets.items():
            vals = [_probe_acc(z_tr, y_tr, z_te, y_te, idx) for idx in idxs]
            acc[name][key], std[name][key] = float(np.mean(vals)), float(np.std(vals))
    return ProbeResult(data.name, int(code_size), tuple(subsets), acc, std, train_metrics, n_tr, len(y_te),
                       time.perf_counter() - t0)


# =========================================================================== pre-training
@dataclass(frozen=True)
class PretrainConfig:
    """Network D -> hidden... -> classes, its layer-wise pre-training and its fine-tuning.

    ``noise_level`` > 0 makes each layer a denoising autoencoder (``noise``: masking by default,
    the stacked denoising autoencoders of Vincent et al. 2010); 0 makes it a plain one.
    ``n_unlabelled`` caps the (seeded) inputs used for pre-training (None: all training inputs).
    Fine-tuning runs ``finetune_epochs`` passes over the labelled examples (the same for both
    networks), evaluating test accuracy at ``n_points`` epochs along the way.
    """

    hidden: tuple[int, ...] = (500, 500)
    activation: str = "sigmoid"
    noise: str = "masking"
    noise_level: float = 0.25
    pretrain_epochs: int = 10
    pretrain_lr: float = 3e-3
    pretrain_batch: int = 64
    n_unlabelled: int | None = None
    labels: tuple[int, ...] = (100, 1000)
    finetune_epochs: int = 100
    finetune_lr: float = 1e-3
    finetune_batch: int = 32
    weight_decay: float = 0.0
    repeats: int = 1
    n_points: int = 25
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        for name in ("hidden", "labels"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ConfigError(f"hidden={self.hidden!r} must be a non-empty list of layer sizes")
        for i, h in enumerate(self.hidden):
            check_number(f"hidden[{i}]", h, 1, 100_000, integer=True)
        check_choice("activation", self.activation, ("sigmoid", "relu", "tanh"))
        check_choice("noise", self.noise, ("none", "gaussian", "masking", "salt-pepper"))
        check_number("noise_level", self.noise_level, 0.0)
        if self.noise in ("masking", "salt-pepper") and self.noise_level > 1:
            raise ConfigError(f"noise_level={self.noise_level!r} is a fraction of inputs for {self.noise} noise; "
                              "must be <= 1")
        check_number("pretrain_epochs", self.pretrain_epochs, 0, 100_000, integer=True)
        check_number("pretrain_lr", self.pretrain_lr, 0.0, 10.0, lo_open=True)
        check_number("pretrain_batch", self.pretrain_batch, 1, 1_000_000, integer=True)
        if self.n_unlabelled is not None:
            check_number("n_unlabelled", self.n_unlabelled, 2, integer=True)
        object.__setattr__(self, "labels", _check_labels(self.labels, allow_all=False))
        check_number("finetune_epochs", self.finetune_epochs, 1, 100_000, integer=True)
        check_number("finetune_lr", self.finetune_lr, 0.0, 10.0, lo_open=True)
        check_number("finetune_batch", self.finetune_batch, 1, 1_000_000, integer=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("repeats", self.repeats, 1, 100, integer=True)
        check_number("n_points", self.n_points, 2, 10_000, integer=True)
        check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        check_choice("device", self.device, ("auto", "cpu", "cuda", "mps"))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _make_classifier_cls():
    import torch
    from torch import nn

    from .kernels import linear
    from .models.autoencoder import ACT, glorot_

    class _MLPClassifier(nn.Module):
        """D -> hidden... (activation) -> n_classes logits."""

        def __init__(self, dims: Sequence[int], n_classes: int, activation: str, generator=None):
            super().__init__()
            self.dims = [int(d) for d in dims]
            self.act = ACT[activation]
            self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(self.dims[:-1], self.dims[1:]))
            self.head = nn.Linear(self.dims[-1], int(n_classes))
            for lin in [*self.layers, self.head]:
                glorot_(lin.weight, generator)
                nn.init.zeros_(lin.bias)

        def load_encoders(self, weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
            """Copy pre-trained encoder (W (out, in), b (out,)) pairs into the hidden layers."""
            with torch.no_grad():
                for lin, (w, b) in zip(self.layers, weights):
                    lin.weight.copy_(torch.as_tensor(w))
                    lin.bias.copy_(torch.as_tensor(b))

        def forward(self, x):  # (B, D) -> (B, C)
            for lin in self.layers:
                x = self.act(linear(x, lin.weight, lin.bias))
            return linear(x, self.head.weight, self.head.bias)

        @property
        def W(self):
            return self.layers[0].weight  # (hidden[0], D) first-layer filters

    return _MLPClassifier


_CLS = None


def MLPClassifier(dims: Sequence[int], n_classes: int, activation: str = "sigmoid", generator=None):
    """A plain multilayer perceptron (torch ``nn.Module``; torch is imported lazily)."""
    global _CLS
    if _CLS is None:
        _CLS = _make_classifier_cls()
    return _CLS(dims, n_classes, activation, generator)


@dataclass(frozen=True)
class PretrainResult:
    dataset: str
    config: PretrainConfig
    accuracy: dict[str, dict[str, float]]  # "pretrained" / "random" -> label key -> final test accuracy
    curves: dict[str, dict[str, list]]  # label key -> {"epoch", "pretrained", "random", "pretrained_loss", "random_loss"}
    layer_losses: list[dict]  # per pre-trained layer: {"layer", "input_dim", "code_size", "train_loss", "seconds"}
    filters: dict[str, dict[str, np.ndarray]] = field(repr=False)  # label key -> "pretrained"/"random"/"init" -> W
    shape: tuple[int, ...] = ()
    seconds: float = 0.0
    per_subset: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # like accuracy, one per subset

    def to_dict(self) -> dict:
        """JSON-ready (no weight arrays)."""
        return {"dataset": self.dataset, "hidden": list(self.config.hidden),
                "labels": [label_key(n) for n in self.config.labels],
                "pretrained": self.accuracy["pretrained"], "random": self.accuracy["random"],
                "per_subset": self.per_subset, "curves": self.curves, "layers": self.layer_losses,
                "seconds": self.seconds}


def _pretrain_layers(x_tr: np.ndarray, x_te: np.ndarray, cfg: PretrainConfig, name: str, stage, stop):
    """Greedy layer-wise: train layer l as an autoencoder on the codes of layers < l.
    Returns [(W, b)] and per-layer records."""
    from .data.dataset import make_dataset
    from .embedding import encode_array
    from .training import fit

    weights, records = [], []
    cur_tr, cur_te = x_tr, x_te
    for li, h in enumerate(cfg.hidden):
        if stop is not None and stop.is_set():
            break
        stage(f"pre-training layer {li + 1} of {len(cfg.hidden)} ({cur_tr.shape[1]} -> {h})")
        in_01 = float(cur_tr.min()) >= 0 and float(cur_tr.max()) <= 1
        variant = "relu" if cfg.activation == "relu" else "sigmoid"
        mc = ModelConfig(variant=variant, code_size=int(h), activation=cfg.activation,
                         output="sigmoid" if in_01 else "linear", loss="cross-entropy" if in_01 else "squared",
                         noise=cfg.noise if cfg.noise_level > 0 else "none",
                         noise_level=float(cfg.noise_level) if cfg.noise != "none" else 0.0)
        ds = make_dataset(f"{name}-layer{li}", cur_tr, None, cur_te, None, shape=(cur_tr.shape[1],), kind="array")
        tc = TrainConfig(dataset=ds.name, epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr,
                         batch_size=cfg.pretrain_batch, seed=cfg.seed + li, device=cfg.device,
                         lr_schedule="cosine", snapshot_every=1e9, progress_every=1e9)
        res = fit(mc, tc, ds, stop=stop)
        model = res.model.cpu().eval()
        weights.append((model.enc_w[0].detach().numpy().copy(), model.enc_b[0].detach().numpy().copy()))
        records.append({"layer": li + 1, "input_dim": int(cur_tr.shape[1]), "code_size": int(h),
                        "train_loss": float(res.metrics["train_loss"]), "test_sse": float(res.metrics["test_sse"]),
                        "seconds": float(res.metrics["seconds"])})
        if li < len(cfg.hidden) - 1:
            cur_tr, cur_te = encode_array(model, cur_tr), encode_array(model, cur_te)
    return weights, records


def _finetune(net, x, y, x_te, y_te, cfg: PretrainConfig, seed: int, device, stop):
    """Train net on (x, y) with cross-entropy; test accuracy at ``n_points`` epochs. Returns curve dict."""
    import torch
    import torch.nn.functional as F

    net = net.to(device).train()
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor(y, device=device)
    xte = torch.as_tensor(x_te, device=device)
    yte = torch.as_tensor(y_te, device=device)
    from .training import optimizer_and_step

    # fused on the CPU, and stepped without Optimizer.step's bookkeeping
    opt, opt_step = optimizer_and_step(torch.optim.Adam, net.parameters(), lr=cfg.finetune_lr,
                                       weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(seed)
    n, B = len(xt), min(cfg.finetune_batch, len(xt))
    E = cfg.finetune_epochs
    marks = sorted(set(np.unique(np.linspace(0, E, cfg.n_points).round().astype(int)).tolist()))
    curve = {"epoch": [], "accuracy": [], "loss": []}

    def evaluate(epoch):
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xte[i:i + 4096]).argmax(1) == yte[i:i + 4096]).sum())
                          for i in range(0, len(xte), 4096))
            loss = float(F.cross_entropy(net(xt), yt))
        net.train()
        curve["epoch"].append(epoch)
        curve["accuracy"].append(correct / len(yte))
        curve["loss"].append(loss)

    evaluate(0)
    for epoch in range(1, E + 1):
        perm = torch.randperm(n, generator=gen, device=device)
        for i in range(0, n, B):
            idx = perm[i:i + B]
            loss = F.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt_step()
        if epoch in marks:
            evaluate(epoch)
        if stop is not None and stop.is_set():
            if curve["epoch"][-1] != epoch:
                evaluate(epoch)
            break
    if not all(math.isfinite(v) for v in curve["loss"]):
        from .training import TrainingFailed
        raise TrainingFailed(f"fine-tuning diverged; try a lower finetune_lr than {cfg.finetune_lr:g}")
    return curve


def pretrain(data, cfg: PretrainConfig | None = None, on_stage: Callable[[str], None] | None = None,
             stop: threading.Event | None = None) -> PretrainResult:
    """Greedy layer-wise pre-training + fine-tuning vs the same network from random init.

    For each label count: ``repeats`` class-balanced labelled subsets; both networks start
    from the same head initialisation and see the same examples in the same order; the
    accuracy reported is the test accuracy after the last fine-tuning epoch, averaged over
    the subsets (curves are averaged too). Filters are the first layers after fine-tuning on
    the first subset, plus the pre-trained ones before fine-tuning (``"init"``).
    """
    import torch

    from .training import resolve_device

    cfg = cfg or PretrainConfig()
    if data.y_train is None:
        raise ConfigError(f"dataset {data.name!r} has no labels; fine-tuning needs them")
    stage = on_stage or (lambda s: None)
    torch.set_flush_denormal(True)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    x_tr, y_tr = np.asarray(data.x_train, np.float32), np.asarray(data.y_train, np.int64)
    x_te, y_te = np.asarray(data.x_test, np.float32), np.asarray(data.y_test, np.int64)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    x_un = x_tr
    if cfg.n_unlabelled is not None and cfg.n_unlabelled < len(x_tr):
        idx = np.sort(np.random.default_rng(cfg.seed).choice(len(x_tr), cfg.n_unlabelled, replace=False))
        x_un = np.ascontiguousarray(x_tr[idx])
    weights, layers = ([], [])
    if cfg.pretrain_epochs > 0:
        weights, layers = _pretrain_layers(x_un, x_te[:1000], cfg, data.name, stage, stop)
    dims = [x_tr.shape[1], *cfg.hidden]
    acc = {"pretrained": {}, "random": {}}
    per_subset = {"pretrained": {}, "random": {}}
    curves, filters = {}, {}
    for n in cfg.labels:
        key = label_key(n)
        runs = {"pretrained": [], "random": []}
        for r in range(cfg.repeats):
            if stop is not None and stop.is_set():
                break
            idx = labelled_subset(y_tr, n, cfg.seed + r)
            for which in ("pretrained", "random"):
                stage(f"fine-tuning the {which} network on {len(idx)} labels"
                      + (f" (subset {r + 1} of {cfg.repeats})" if cfg.repeats > 1 else ""))
                net = MLPClassifier(dims, n_classes, cfg.activation,
                                    generator=torch.Generator().manual_seed(cfg.seed + 1000 + r))
                if which == "pretrained":
                    net.load_encoders(weights)
                    if r == 0 and "init" not in filters.get(key, {}):
                        filters.setdefault(key, {})["init"] = net.W.detach().cpu().numpy().copy()
                curve = _finetune(net, x_tr[idx], y_tr[idx], x_te, y_te, cfg, cfg.seed + r, device, stop)
                runs[which].append(curve)
                if r == 0:
                    filters.setdefault(key, {})[which] = net.W.detach().cpu().numpy().copy()
        if not runs["random"]:
            break
        m = min(len(c["epoch"]) for c in runs["pretrained"] + runs["random"])
        curves[key] = {"epoch": runs["random"][0]["epoch"][:m]}
        for which in ("pretrained", "random"):
            accs = np.mean([c["accuracy"][:m] for c in runs[which]], axis=0)
            losses = np.mean([c["loss"][:m] for c in runs[which]], axis=0)
            curves[key][which] = [float(v) for v in accs]
            curves[key][f"{which}_loss"] = [float(v) for v in losses]
            acc[which][key] = float(accs[-1])
            per_subset[which][key] = [float(c["accuracy"][m - 1]) for c in runs[which]]
    return PretrainResult(data.name, cfg, acc, curves, layers, filters, tuple(getattr(data, "shape", ())),
                          time.perf_counter() - t0, per_subset)
