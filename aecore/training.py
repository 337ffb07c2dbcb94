"""The Trainer: trains any registered model and reports what happens as immutable events.

It knows nothing about a particular variant: it asks the model for its named loss terms
(``loss_terms``) and their weights (``loss_weights``), sums them, and logs every key.
Data sits on the device as one tensor and is sliced by shuffled indices; loss terms are
accumulated on the device and read back only at a wall-clock cadence, so a GPU never waits
for the host inside the loop. On a CUDA GPU a step that draws no random numbers is captured
once as a CUDA graph and replayed (see ``graph_reason``): one launch per step instead of one
per kernel, which is what bounds small models there.

    for event in Trainer(model_cfg, train_cfg, data).run():
        ...  # Progress | Snapshot | Finished | Failed
"""
from __future__ import annotations

import contextlib
import gc
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch

from . import backprop, kernels
from .augment import check_shift, random_shift
from .baselines import fit_pca
from .config import ModelConfig, TrainConfig
from .metrics import principal_angles_deg, recon_errors
from .models import build_model, start_output_bias

__all__ = ["Progress", "Snapshot", "Finished", "Failed", "Evaluation", "Trainer", "TrainResult", "TrainingFailed",
           "fit", "resolve_device", "evaluate", "as_tensor",
           "estimate_memory", "available_memory", "memory_fraction", "memory_check", "is_out_of_memory",
           "out_of_memory_reason", "release_memory", "MEMORY_FRACTION", "cuda_graph_setting", "GRAPH_WARMUP"]


# --- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    step: int
    epoch: float             # fractional epochs done
    epochs: int
    total_steps: int
    terms: Mapping[str, float]  # weighted terms, mean over the steps since the last event
    loss: float              # their sum
    samples_per_second: float
    elapsed: float           # seconds since training started
    eta: float               # seconds left (estimate)


@dataclass(frozen=True)
class Snapshot:
    step: int
    epoch: float
    elapsed: float
    W: np.ndarray                 # (K1, D) first encoder layer: the filters
    decoder_W: np.ndarray         # (D, K_last) last decoder layer
    inputs: np.ndarray            # (n, D) a fixed batch of test examples
    corrupted: np.ndarray | None  # (n, D) what the model saw, for noisy variants
    recon: np.ndarray             # (n, D) its reconstructions
    codes: np.ndarray             # (m, K) codes of a fixed test sample
    code_labels: np.ndarray | None
    principal_angles_deg: np.ndarray | None  # linear variants: decoder subspace vs PCA's


@dataclass(frozen=True)
class Finished:
    metrics: Mapping[str, object]
    history: tuple  # rows (dicts) of every Progress event
    model: torch.nn.Module = field(repr=False)
    stopped: bool = False


@dataclass(frozen=True)
class Evaluation:
    """Held-out loss at the end of an epoch (only with ``Trainer(eval_each_epoch=True)``)."""
    epoch: int
    step: int
    terms: Mapping[str, float]  # unweighted loss terms, mean per held-out example
    loss: float                 # their weighted sum, as in training
    neg_elbo: float | None = None  # VAE: recon + KL (β = 1) with a sampled code, nats per example


@dataclass(frozen=True)
class Failed:
    reason: str
    step: int | None = None
    history: tuple = ()


class TrainingFailed(RuntimeError):
    pass


# --- helpers -----------------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available; use device='auto' or 'cpu'")
    return torch.device(name)


def as_tensor(a: np.ndarray, device) -> torch.Tensor:
    """A tensor view of a (read-only) dataset array on ``device``. Dataset arrays are read-only
    and nothing here writes to them, so torch's not-writable warning is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(a, device=device)


# --- memory: a pre-flight estimate, and a clean failure when memory runs out anyway ------------
MEMORY_FRACTION = 0.8  # of the free memory one run may plan to use (AECORE_MEMORY_FRACTION; 0 = no check)


def memory_fraction() -> float:
    """``$AECORE_MEMORY_FRACTION`` (read per call), else ``MEMORY_FRACTION``; 0 turns the check off."""
    raw = os.environ.get("AECORE_MEMORY_FRACTION", "").strip()
    if not raw:
        return MEMORY_FRACTION
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"AECORE_MEMORY_FRACTION={raw!r} must be a number from 0 to 1 "
                         f"(the share of free memory one run may use; 0 turns the check off)")
    return value


def estimate_memory(model_cfg: ModelConfig, input_dim: int, batch_size: int, n_train: int = 0,
                    device="cpu") -> tuple[int, int]:
    """(bytes, parameters): a run's peak memory, roughly and on the high side.

    Every parameter four times (weights, gradients, Adam's two moments); per example of a
    training batch the units it passes through three times (values, gradients, activation
    inputs), plus one evaluation batch of 4096; the training set when it is copied to a GPU.
    The model is built on the 'meta' device, which allocates nothing.
    """
    with torch.device("meta"):
        model = build_model(model_cfg, input_dim)
    params = sum(p.numel() for p in model.parameters())
    units = sum(sum(p.shape) for p in model.parameters() if p.dim() == 2)  # inputs + outputs of every layer
    floats = 4 * params + units * (3 * batch_size + 4096)
    if torch.device(device).type != "cpu":
        floats += n_train * input_dim
    return 4 * floats, params  # float32


def _cgroup_free() -> int | None:
    """What a container's memory limit (cgroup v2) leaves free, if there is a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        return None if limit == "max" else max(0, int(limit) - int(used))
    except (OSError, ValueError):
        return None


def available_memory(device) -> int | None:
    """Free bytes on ``device`` now (CUDA: the driver's count plus torch's cached blocks; CPU:
    MemAvailable, capped by a container limit); None where it cannot be told (MPS)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free) + int(torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_free()
    return free if limit is None else min(free, limit)


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def _what_to_lower(model_cfg: ModelConfig, batch_size: int) -> str:
    hidden = f", the hidden layer sizes (now {','.join(map(str, model_cfg.hidden))})" if model_cfg.hidden else ""
    return f"lower the code size K (now {model_cfg.code_size}){hidden} or the batch size (now {batch_size})"


def memory_check(model_cfg: ModelConfig, input_dim: int, batch_size: int, n_train: int, device,
                 fraction: float | None = None) -> str | None:
    """None when the run fits in ``fraction`` of the free memory of ``device``; else the reason
    to refuse it, before anything is allocated, saying what to lower."""
    fraction = memory_fraction() if fraction is None else fraction
    if not fraction:
        return None
    free = available_memory(device)
    if free is None:
        return None
    need, params = estimate_memory(model_cfg, input_dim, batch_size, n_train, device)
    if need <= fraction * free:
        return None
    return (f"not enough memory: this run needs about {_gib(need)} of {torch.device(device).type} memory "
            f"({params:,} parameters with their gradients and optimizer state, plus activations) but "
            f"{_gib(free)} is free and one run may use {fraction:.0%} of it (AECORE_MEMORY_FRACTION); "
            f"{_what_to_lower(model_cfg, batch_size)}")


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, torch's (CUDA) OutOfMemoryError, or an allocator's RuntimeError."""
    if isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def out_of_memory_reason(exc: BaseException, model_cfg: ModelConfig, train_cfg: TrainConfig) -> str:
    detail = (str(exc).strip().splitlines() or [""])[0][:200] or type(exc).__name__
    return (f"out of memory: the run needed more memory than was free ({detail}); "
            f"{_what_to_lower(model_cfg, train_cfg.batch_size)}, or train on fewer examples")


def release_memory() -> None:
    """Free what a failed run left behind: Python's cycles, then torch's cached GPU blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)]) if x.shape[0] else x


@torch.no_grad()
def evaluate(model, x_test: np.ndarray, x_train: np.ndarray, code_size: int, device=None,
             seed: int = 0) -> dict[str, float]:
    """Test reconstruction error of the model and of PCA at the same K (and the ELBO for a VAE)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    xt = as_tensor(x_test, device)
    recon = _batched(model.reconstruct, xt).cpu().numpy()
    err = recon_errors(x_test, recon)
    pca = fit_pca(x_train, code_size)
    perr = recon_errors(x_test, pca.reconstruct(x_test))
    out = {"test_mse": err["mse"], "test_sse": err["sse"], "pca_mse": perr["mse"], "pca_sse": perr["sse"],
           "pca_components": pca.n_components_}
    if hasattr(model, "elbo"):
        g = torch.Generator(device=device).manual_seed(seed)
        elbos = [model.elbo(xt[i:i + 4096], generator=g) * xt[i:i + 4096].shape[0] for i in range(0, len(xt), 4096)]
        out["test_elbo"] = float(torch.stack(elbos).sum() / len(xt))
    if getattr(model, "is_linear", False) and code_size <= x_train.shape[1]:
        out["max_principal_angle_deg"] = float(
            principal_angles_deg(model.decoder_weight.detach().cpu().numpy(), pca.components_.T).max())
    model.train(was_training)
    return out


def mixed_precision(precision: str, device: torch.device):
    """The context a training step's forward pass runs in: nothing for float32; for bfloat16,
    autocast (matrix products in bfloat16; the loss terms upcast to float32 in objectives)."""
    if precision == "float32":
        return contextlib.nullcontext()
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"precision={precision!r} is not available on device {device.type!r}; use 'float32'")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_optimizer(opt_cls, params, **kwargs) -> torch.optim.Optimizer:
    """``opt_cls(params, **kwargs)``, fused where torch has it: Adam's fused kernel updates every
    parameter in one pass (CPU since torch 2.4, CUDA); on a 2-core CPU it trained the three
    benchmark models (bench/training.py) at 1.15-1.3x the samples/s of the default per-tensor
    update. Same update rule; a torch without it falls back to the default."""
    params = list(params)
    if opt_cls is torch.optim.Adam:
        try:
            return opt_cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # older torch, or a device without the kernel
            pass
    return opt_cls(params, **kwargs)


def optimizer_and_step(opt_cls, params, **kwargs):
    """``make_optimizer(opt_cls, params, **kwargs)`` and what steps it (``fast_step``): the pair
    every training loop here uses."""
    opt = make_optimizer(opt_cls, params, **kwargs)
    return opt, fast_step(opt)


def _plain_fused_adam(opt) -> bool:
    """Whether ``opt`` is a fused CPU Adam that ``Adam.step`` would update with one ``_fused_adam_``
    call per parameter group and nothing else: no amsgrad, maximize, capturable, differentiable or
    decoupled weight decay, real floating parameters of one dtype per group, on the CPU."""
    if type(opt) is not torch.optim.Adam or not hasattr(torch, "_fused_adam_"):
        return False
    for g in opt.param_groups:
        if not g.get("fused") or any(g.get(k) for k in ("amsgrad", "maximize", "capturable", "differentiable",
                                                         "decoupled_weight_decay", "foreach")):
            return False
        ps = g["params"]
        if isinstance(g["lr"], torch.Tensor) or not ps or any(p.device.type != "cpu" for p in ps):
            return False
        if len({p.dtype for p in ps}) != 1 or not ps[0].is_floating_point() or ps[0].is_complex():
            return False
    return True


def fast_step(opt: torch.optim.Optimizer):
    """``opt.step``, or for a fused Adam on the CPU the same update without Optimizer.step's Python
    bookkeeping (hooks, profiler records, regrouping the tensors by device and dtype on every call):
    the step counters go up by one and ``torch._fused_adam_`` updates the optimizer's own parameters
    and state tensors, as ``Adam.step`` does, so the result is bit for bit the same (tested) and
    ``state_dict``, checkpoints and a later ``opt.step`` carry on from it. On the dashboard's digits
    model (64-32-64, batch 64) a step took 371-375 µs against 432-476 µs with ``opt.step``; on the
    MNIST VAE (784-400-20, batch 256) Adam's share fell from about 410 to 280 µs. Anything else,
    and any step where a parameter has no gradient or no state yet (the first one creates it) or a
    step hook is registered, goes through ``opt.step``."""
    if not _plain_fused_adam(opt):
        return opt.step
    from torch.optim import optimizer as _optimizer

    groups, state = opt.param_groups, opt.state
    hooks = [getattr(opt, "_optimizer_step_pre_hooks", None), getattr(opt, "_optimizer_step_post_hooks", None),
             getattr(_optimizer, "_global_optimizer_pre_hooks", None),
             getattr(_optimizer, "_global_optimizer_post_hooks", None)]

    def step() -> None:
        if any(hooks):
            opt.step()
            return
        work = []
        for g in groups:
            ps = g["params"]
            grads = [p.grad for p in ps]
            st = [state.get(p) for p in ps]  # (.get: the state is a defaultdict, and [] would fill it)
            if (isinstance(g["lr"], torch.Tensor) or any(x is None or x.is_sparse for x in grads)
                    or any(x is None for x in st)):
                opt.step()
                return
            work.append((g, ps, grads, st))
        for g, ps, grads, st in work:
            steps = [x["step"] for x in st]
            torch._foreach_add_(steps, 1)
            beta1, beta2 = g["betas"]
            torch._fused_adam_(ps, grads, [x["exp_avg"] for x in st], [x["exp_avg_sq"] for x in st], [], steps,
                               amsgrad=False, lr=float(g["lr"]), beta1=float(beta1), beta2=float(beta2),
                               weight_decay=float(g["weight_decay"]), eps=float(g["eps"]), maximize=False)

    return step

# --- CUDA graphs: the whole step (forward, backward, Adam, the loss bookkeeping) as one launch ---
GRAPH_WARMUP = 3  # eager full-batch steps (on a side stream) before the capture, as torch.cuda.graphs asks
GRAPH_DEVICES = ("cuda",)


def cuda_graph_setting(value: bool | None = None) -> bool:
    """Whether a CUDA step may be captured: ``value`` if given, else ``$AECORE_CUDA_GRAPH``
    (1/on, the default; 0/off turns it off for a comparison or a misbehaving driver)."""
    if value is not None:
        return bool(value)
    raw = os.environ.get("AECORE_CUDA_GRAPH", "").strip().lower()
    if raw in ("", "1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"AECORE_CUDA_GRAPH={raw!r} must be 1 (capture the training step as a CUDA graph) or 0 (do not)")


def _capture(fn, device: torch.device):
    """Capture ``fn`` (which must only write into tensors that outlive it) as a CUDA graph; return
    what replays it. Capturing records kernels without running them."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


class _SideStream:
    """A reusable context: the warm-up steps before a capture run on a side stream, as
    torch.cuda.graphs asks; off CUDA it does nothing."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._ctx = None

    def __enter__(self):
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            self._ctx = torch.cuda.stream(self.stream)
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self.stream is not None:
            self._ctx.__exit__(*exc)
            self._ctx = None
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return False


class Trainer:
    """Trains ``build_model(model_cfg)`` on ``data`` (an ``aecore.data.Dataset``).

    ``stop`` (a ``threading.Event``) ends training within one step; the run then finishes
    with ``stopped=True`` and its metrics. Events are yielded from ``run()``.
    ``cuda_graph`` (None: ``$AECORE_CUDA_GRAPH``, on by default) lets a CUDA run replay its step as
    a CUDA graph where ``graph_reason`` allows; ``metrics["cuda_graph"]`` says whether it did and
    ``graph_note`` why not. On the CPU the gradients of a dense autoencoder or the VAE are written out
    (``aecore.backprop``; ``$AECORE_BACKWARD=autograd`` turns it off): ``metrics["backward"]``
    says "analytic" or "autograd" and ``backward_note`` why autograd.
    ``metrics["samples_per_second"]`` is the whole run's rate, first step included;
    ``metrics["steady_samples_per_second"]`` counts from step ``metrics["steady_from_step"]``, once
    the first GRAPH_WARMUP steps (and on CUDA the capture) are behind it.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data, stop: threading.Event | None = None,
                 n_show: int = 16, n_codes: int = 1000, min_snapshots: int = 0, eval_each_epoch: bool = False,
                 memory_fraction: float | None = None, cuda_graph: bool | None = None):
        self.model_cfg = model_cfg
        self.train_cfg = train_cfg
        self.data = data
        self.stop = stop or threading.Event()
        self.n_show = n_show
        self.n_codes = n_codes
        # besides the wall-clock cadence, at least this many snapshots spread over the steps
        # (a run that ends in a second still has frames to replay)
        self.min_snapshots = min_snapshots
        self.eval_each_epoch = eval_each_epoch  # held-out loss after every epoch (an Evaluation event)
        # refuse a run whose estimate exceeds this share of free memory (None: $AECORE_MEMORY_FRACTION; 0: no check)
        self.memory_fraction = memory_fraction
        self.cuda_graph = cuda_graph  # None: $AECORE_CUDA_GRAPH, read when the run starts
        self.graph_note = ""  # after a run: why its step was not replayed as a CUDA graph ("" if it was)
        self.backward_note = ""  # after a run: why its gradients came from autograd ("" if written out)

    def run(self) -> Iterator[Progress | Snapshot | Finished | Failed]:
        oom = False
        try:
            yield from self._run()
            return
        except (ValueError, RuntimeError, MemoryError) as exc:  # OOM, bad device, bad shapes
            oom = is_out_of_memory(exc)
            reason = out_of_memory_reason(exc, self.model_cfg, self.train_cfg) if oom else f"{type(exc).__name__}: {exc}"
        if oom:  # the exception is gone, and with its traceback the model, optimizer state and batches
            release_memory()
        yield Failed(reason)

    def _run(self):
        mc, tc, data = self.model_cfg, self.train_cfg, self.data
        torch.set_flush_denormal(True)  # weights shrinking to ~0 would otherwise slow CPU matmuls 10-30x
        device = resolve_device(tc.device)
        x_np = data.x_train
        if tc.n_train is not None and tc.n_train < len(x_np):
            idx = np.random.default_rng(tc.seed).choice(len(x_np), size=tc.n_train, replace=False)
            x_np = np.ascontiguousarray(x_np[np.sort(idx)])
        if mc.loss == "cross-entropy" and (float(x_np.min()) < 0 or float(x_np.max()) > 1):
            raise ValueError(f"loss='cross-entropy' needs inputs in [0, 1]; data {tc.dataset!r} spans "
                             f"[{float(x_np.min()):.3g}, {float(x_np.max()):.3g}]. Use loss='squared'.")
        D = x_np.shape[1]
        if tc.augment_shift:
            check_shift(tc.augment_shift, data.shape, data.kind, tc.dataset)
        too_big = memory_check(mc, D, min(tc.batch_size, len(x_np)), len(x_np), device, self.memory_fraction)
        if too_big:  # refused before the model or its optimizer state is allocated
            yield Failed(too_big)
            return
        gen = torch.Generator(device=device).manual_seed(tc.seed)
        init_gen = torch.Generator().manual_seed(tc.seed)
        model = build_model(mc, D, generator=init_gen).to(device)
        x = as_tensor(x_np, device)  # (N, D) the whole training set, on the device
        if tc.output_bias == "data":
            start_output_bias(model, x)
        N = x.shape[0]
        n_local = self._shard(torch.arange(N, device=device)).shape[0]  # examples this process sees per epoch
        B = min(tc.batch_size, n_local)
        steps_per_epoch = math.ceil(n_local / B)
        loss_fn = self._loss_fn(model)
        total_steps = steps_per_epoch * tc.epochs
        # fixed views for snapshots
        xs_np = data.x_test[: self.n_show]
        xs = as_tensor(xs_np, device)
        xs_corrupt = model.corrupt(xs, torch.Generator(device=device).manual_seed(tc.seed + 1))
        noisy = xs_corrupt is not xs

        self.graph_note = self.graph_reason(model, device, noisy) or ""
        graph_wanted = not self.graph_note
        opt_cls = torch.optim.Adam if tc.optimizer == "adam" else torch.optim.SGD
        if graph_wanted:  # Adam's state and its learning rate on the device, so that a graph can step it
            opt, opt_step = optimizer_and_step(opt_cls, model.parameters(),
                                               lr=torch.tensor(float(tc.lr), device=device),
                                               weight_decay=tc.weight_decay, capturable=True)
        else:
            opt, opt_step = optimizer_and_step(opt_cls, model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        amp = mixed_precision(tc.precision, device)
        if tc.precision == "bfloat16" and device.type == "cpu" and (slow := kernels.bf16_warning()):
            warnings.warn(f"precision='bfloat16': {slow}", RuntimeWarning, stacklevel=2)
        weights = model.loss_weights()
        names = list(weights)
        w_vec = torch.tensor([weights[n] for n in names], device=device)
        xc = as_tensor(data.x_test[: self.n_codes], device)
        yc = None if data.y_test is None else np.asarray(data.y_test[: self.n_codes])
        pca_basis = None
        if model.is_linear and mc.code_size <= D:
            pca_basis = fit_pca(x_np, mc.code_size).components_.T  # (D, K)

        def snapshot(step, epoch, elapsed):
            model.eval()
            with torch.no_grad():
                rec = model.reconstruct(xs_corrupt)
                codes = _batched(model.encode, xc)
                W = model.W.detach().cpu().numpy().copy()
                dW = model.decoder_weight.detach().cpu().numpy().copy()
            model.train()
            ang = principal_angles_deg(dW, pca_basis) if pca_basis is not None else None
            return Snapshot(step, epoch, elapsed, W, dW, xs_np, xs_corrupt.cpu().numpy() if noisy else None,
                            rec.cpu().numpy(), codes.cpu().numpy(), yc, ang)

        # fail fast: one batch through the model before any step
        model.train()
        with torch.no_grad():
            first = model.loss_terms(x[:B], generator=torch.Generator(device=device).manual_seed(tc.seed))
        for n, t in first.items():
            if not torch.isfinite(t):
                yield Failed(f"loss term {n!r} is not finite on the first batch ({float(t)}): check the data")
                return
        yield snapshot(0, 0.0, 0.0)

        history: list[dict] = []
        acc = torch.zeros(len(names), device=device)  # weighted terms summed since the last event
        epoch_acc = torch.zeros(len(names), device=device)
        first_bad = torch.full((len(names),), -1, dtype=torch.long, device=device)
        acc_steps = 0
        step = 0
        samples = 0  # examples stepped on (a short last batch counts what it holds)
        steady = None  # (step, samples, time) once the warm-up steps (and a capture) are behind
        t0 = time.perf_counter()
        last_progress = last_snap = t0
        last_samples_reported, last_time_reported = 0, t0
        snap_every_steps = max(1, total_steps // self.min_snapshots) if self.min_snapshots else None
        next_snap_step = snap_every_steps or 0
        epoch_loss = float("nan")
        stopped = False

        def progress(now):
            nonlocal acc_steps, last_samples_reported, last_time_reported
            vals = (acc / max(acc_steps, 1)).tolist()  # the one host sync per cadence
            if device.type != "cpu":  # on a GPU, the time of the work done, not of its launch (as at the end)
                now = time.perf_counter()
            bad = first_bad.tolist()
            if any(b >= 0 for b in bad):
                i = min((b, i) for i, b in enumerate(bad) if b >= 0)[1]
                return Failed(f"diverged at step {bad[i]} (term {names[i]!r} is not finite); "
                              f"try a lower learning rate than lr={tc.lr:g}", bad[i], tuple(history))
            terms = dict(zip(names, vals))
            dt = max(now - last_time_reported, 1e-9)
            sps = (samples - last_samples_reported) / dt
            elapsed = now - t0
            eta = elapsed / step * (total_steps - step) if step else float("nan")
            ev = Progress(step, step / steps_per_epoch, tc.epochs, total_steps, terms, float(sum(vals)),
                          sps, elapsed, eta)
            history.append({"step": step, "epoch": ev.epoch, "elapsed": elapsed, "loss": ev.loss,
                            "samples_per_second": sps, **terms})
            acc.zero_()
            acc_steps = 0
            last_samples_reported, last_time_reported = samples, now
            return ev

        def record(vec, at):
            """A step's bookkeeping, in place: a captured graph writes into these same tensors."""
            first_bad.copy_(torch.where((first_bad < 0) & ~torch.isfinite(vec), at, first_bad))
            acc.add_(vec)
            epoch_acc.add_(vec)

        written_out = self._written_out_fn(model, device)

        def eager_step(xb):
            if written_out is not None:  # the gradients written out: no graph, no backward
                terms = written_out(xb, generator=gen, weights=weights)
                vec = torch.stack([terms[n] for n in names]) * w_vec
                opt_step()
                record(vec, step)
                return
            with amp:
                terms = loss_fn(xb, generator=gen)
            vec = torch.stack([terms[n] for n in names]) * w_vec
            # with a graph the gradients stay where the graph reads and writes them
            opt.zero_grad(set_to_none=not graph_wanted)
            vec.sum().backward()
            opt_step()
            record(vec.detach(), step)

        replay = None  # the captured step, once there is one
        lr_on_device = graph_wanted
        if graph_wanted:
            static_x = x[:B].clone()  # each replay's batch is gathered into this
            step_t = torch.zeros((), dtype=torch.long, device=device)  # the step index, counted on the device
            lr_t = opt.param_groups[0]["lr"]
            warm = _SideStream(device)
            warmed = 0

            def graph_step():
                opt.zero_grad(set_to_none=False)
                terms = loss_fn(static_x)
                vec = torch.stack([terms[n] for n in names]) * w_vec
                vec.sum().backward()
                opt.step()
                record(vec.detach(), step_t)
                step_t.add_(1)

        for epoch in range(tc.epochs):
            perm = self._shard(torch.randperm(N, generator=gen, device=device))
            epoch_acc.zero_()
            for i in range(0, n_local, B):
                if tc.lr_schedule == "cosine":
                    lr = tc.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
                    if lr_on_device:
                        lr_t.fill_(lr)
                    else:
                        for group in opt.param_groups:
                            group["lr"] = lr
                idx = perm[i:i + B]
                if replay is not None and idx.shape[0] == B:
                    torch.index_select(x, 0, idx, out=static_x)
                    replay()
                else:
                    xb = x.index_select(0, idx)  # 3-4x faster than x[idx] on the CPU
                    if tc.augment_shift:
                        xb = random_shift(xb, data.shape, tc.augment_shift, gen)
                    if graph_wanted and replay is None and idx.shape[0] == B:
                        with warm:
                            eager_step(xb)
                        warmed += 1
                    else:
                        eager_step(xb)
                    if replay is not None:  # a short last batch between replays: the device's count follows
                        step_t.fill_(step + 1)
                acc_steps += 1
                samples += idx.shape[0]
                step += 1
                if graph_wanted and replay is None and warmed >= GRAPH_WARMUP:
                    replay = self._start_graph(graph_step, device, step_t, step)
                    graph_wanted = replay is not None
                if steady is None and step >= GRAPH_WARMUP and not (graph_wanted and replay is None):
                    if device.type == "cuda":  # (once per run: the clock starts when the device is idle)
                        torch.cuda.synchronize(device)
                    steady = (step, samples, time.perf_counter())
                if self._should_stop(step):
                    stopped = True
                    break
                now = time.perf_counter()
                if now - last_progress >= tc.progress_every:
                    ev = progress(now)
                    yield ev
                    if isinstance(ev, Failed):
                        return
                    last_progress = now
                if now - last_snap >= tc.snapshot_every or (snap_every_steps and step >= next_snap_step):
                    yield snapshot(step, step / steps_per_epoch, now - t0)
                    last_snap = time.perf_counter()
                    if snap_every_steps:
                        next_snap_step = (step // snap_every_steps + 1) * snap_every_steps
            if stopped:
                break
            epoch_loss = float(epoch_acc.sum()) / steps_per_epoch
            if self.eval_each_epoch:
                yield self._evaluation(model, data.x_test, epoch + 1, step, weights, device, tc.seed)
        if device.type == "cuda":  # the time of the work done, not of its launch
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        if acc_steps:
            ev = progress(now)
            yield ev
            if isinstance(ev, Failed):
                return
        seconds = now - t0
        yield snapshot(step, step / steps_per_epoch, seconds)
        metrics = {"variant": mc.variant, "dataset": tc.dataset, "code_size": mc.code_size,
                   "epochs": step / steps_per_epoch, "steps": step, "device": str(device),
                   "seconds": seconds, "samples_per_second": samples / max(seconds, 1e-9),
                   **self._steady_rate(steady, step, samples, now, seconds),
                   "train_loss": epoch_loss if math.isfinite(epoch_loss) else (history[-1]["loss"] if history else epoch_loss),
                   "cuda_graph": replay is not None,
                   "backward": "autograd" if written_out is None else "analytic"}
        metrics.update(evaluate(model, data.x_test, x_np, mc.code_size, device, tc.seed))
        yield Finished(metrics, tuple(history), model, stopped)

    def graph_reason(self, model, device: torch.device, noisy: bool) -> str | None:
        """Why this run's step cannot be replayed as a CUDA graph (None: it can). A graph replays
        fixed kernels on fixed tensors, so the step must not draw random numbers (corruption,
        the VAE's sampling, shifts: their generator state would be frozen into it) nor change
        its kernels (mixed precision's casts are kept eager here)."""
        tc = self.train_cfg
        wanted = cuda_graph_setting(self.cuda_graph)  # a bad $AECORE_CUDA_GRAPH fails on any device
        if device.type not in GRAPH_DEVICES:
            return f"CUDA graphs are for CUDA GPUs; this run is on {device.type}"
        if not wanted:
            return "turned off (cuda_graph=False or AECORE_CUDA_GRAPH=0)"
        if tc.optimizer != "adam":
            return f"optimizer {tc.optimizer!r}: the captured step is Adam's (capturable, on the device)"
        if tc.precision != "float32":
            return f"precision {tc.precision!r}: the captured step is float32"
        if noisy or tc.augment_shift or hasattr(model, "elbo"):
            return "the step draws random numbers (input noise, the VAE's sampling or shifts)"
        return None

    @staticmethod
    def _steady_rate(steady, step, samples, now, seconds) -> dict:
        """The rate after the first GRAPH_WARMUP steps and any capture (what a longer run tends to),
        and the step it counts from; a run too short to have such steps gives its whole-run rate."""
        if steady is None or step <= steady[0]:
            return {"steady_samples_per_second": samples / max(seconds, 1e-9), "steady_from_step": 0}
        return {"steady_samples_per_second": (samples - steady[1]) / max(now - steady[2], 1e-9),
                "steady_from_step": steady[0]}

    def _start_graph(self, graph_step, device, step_t, step):
        """Capture the step; on failure say why (``graph_note``) and go on eagerly."""
        step_t.fill_(step)
        try:
            return _capture(graph_step, device)
        except Exception as exc:  # noqa: BLE001 - a driver or op that cannot be captured: train eagerly
            self.graph_note = f"capture failed ({type(exc).__name__}: {str(exc)[:200]}); trained eagerly"
            warnings.warn(f"CUDA graph {self.graph_note}", RuntimeWarning, stacklevel=2)
            return None

    # --- hooks: here one process trains on every example with the model itself; aecore.distributed
    # overrides them so that each rank trains on its share through a DistributedDataParallel wrapper
    # and all ranks stop at the same step
    def _shard(self, perm: torch.Tensor) -> torch.Tensor:
        """This process's examples of an epoch, in order, from the epoch's permutation (N,)."""
        return perm

    def _loss_fn(self, model):
        """What computes a training step's loss terms: ``fn(xb, generator=g) -> {name: tensor}``."""
        return model.loss_terms

    def _written_out_fn(self, model, device):
        """What computes a step's loss terms and gradients without autograd (``model.loss_and_grads``),
        or None when the step goes through autograd; ``backward_note`` says why."""
        self.backward_note = backprop.reason(model, self.train_cfg.precision, device) or ""
        return None if self.backward_note else model.loss_and_grads

    def _should_stop(self, step: int) -> bool:
        """Whether training ends after ``step`` steps: once ``stop`` is set (the dashboard's Stop, a signal)."""
        return self.stop.is_set()

    @staticmethod
    @torch.no_grad()
    def _evaluation(model, x_test, epoch, step, weights, device, seed) -> Evaluation:
        was_training = model.training
        model.eval()
        xt = as_tensor(x_test, device)
        sums: dict[str, float] = {}
        for i in range(0, len(xt), 4096):
            xb = xt[i:i + 4096]
            for k, v in model.loss_terms(xb).items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(xb)
        terms = {k: v / len(xt) for k, v in sums.items()}
        neg_elbo = None
        if hasattr(model, "elbo"):
            g = torch.Generator(device=device).manual_seed(seed + epoch)
            neg_elbo = -sum(float(model.elbo(xt[i:i + 4096], generator=g)) * len(xt[i:i + 4096])
                            for i in range(0, len(xt), 4096)) / len(xt)
        model.train(was_training)
        return Evaluation(epoch, step, terms, sum(weights[k] * v for k, v in terms.items()), neg_elbo)


@dataclass(frozen=True)
class TrainResult:
    model: torch.nn.Module
    metrics: Mapping[str, object]
    history: tuple
    snapshots: tuple
    stopped: bool


def fit(model_cfg: ModelConfig, train_cfg: TrainConfig, data, on_event=None, keep_snapshots: bool = False,
        stop: threading.Event | None = None) -> TrainResult:
    """Run a Trainer to the end; raise ``TrainingFailed`` with its reason if it fails."""
    snaps = []
    for ev in Trainer(model_cfg, train_cfg, data, stop=stop).run():
        if on_event is not None:
            on_event(ev)
        if isinstance(ev, Snapshot) and keep_snapshots:
            snaps.append(ev)
        elif isinstance(ev, Failed):
            raise TrainingFailed(ev.reason)
        elif isinstance(ev, Finished):
            return TrainResult(ev.model, dict(ev.metrics), ev.history, tuple(snaps), ev.stopped)
    raise TrainingFailed("training ended without a result")
