"""Autoencoder recommenders: AutoRec (item / user), CDAE and mDA-CF.

Every model trains on sparse ratings (``Ratings``), so no users x items dense matrix is ever
built: AutoRec trains on torch CSR chunks of rows (``_SparseRows``: its cost is nnz x K, not
rows x columns x K), CDAE makes a batch of rows dense on the fly (``csr[rows].toarray()``).
Epochs / iterations are chosen on a validation split carved from the *training* ratings
(``valid_fraction``, seeded), never on the test set; the weights of the best epoch are kept.

AutoRec (Sedhain, Menon, Sanner, Xie, WWW 2015)
    I-AutoRec: each item i is an example r_i in R^N (its users' ratings, 0 = unknown);
    U-AutoRec: each user is an example in R^M. One hidden layer:
        h(r) = sigmoid(V r + mu)          (K)      eq. (1)
        r_hat = W h(r) + b                (D)      identity decoder
    objective (eq. 2):  sum_rows || (r - r_hat) (.) mask ||^2 + lambda/2 (||W||_F^2 + ||V||_F^2)
    Only observed ratings enter the loss (``objectives.squared_error`` with the mask), so an
    unobserved entry passes no gradient to W, b, and (its input being 0) none to V either.
    We optimize the objective divided by the number of rows (per-row sum, batch mean, plus
    lambda / (2 * rows) (||W||^2 + ||V||^2) per batch): the same minimizer, lambda in the
    paper's units. Optimizers: full-batch Rprop as in the paper (gradients accumulated over
    row batches, one step per epoch; the paper also tried L-BFGS), or mini-batch Adam.
    Sparse step (``autorec_loss_sparse``): the encoder multiplies the CSR rows (X V^T), the
    decoder is evaluated only at the observed entries (a sampled matmul), and the gradients are
    the same sparse products backwards; equal to the masked dense loss (tested).
    Epochs: each of ``ensemble`` networks (seeds seed, seed+1, ...) chooses its epoch count on
    its own ``valid_fraction`` of the training ratings (patience), is trained again from scratch
    for that many epochs on all the training ratings, and the predictions are averaged
    (``_snapshot_ensemble``: one wider network). On the validation split of u1.base, averaging 3
    such fits took RMSE from 0.9016 to 0.9000; one epoch choice shared by 3 seeds only to 0.9010.
    ``dropout`` (input dropout, a denoising AutoRec) is an option, off by default: on a
    validation split of ML-100K u1.base it did not help full-batch Rprop (q = 0.1: RMSE 0.9027 vs
    0.9016), and mini-batch Adam was worse still (0.917). The defaults' selection:
    ``aecore.recsys.selection``.
    Residual AutoRec (``residual``, on by default for I-AutoRec): the biased baseline
    b_ui = mu + b_u + b_i (``baselines.BiasedBaseline``) is fitted on the ratings a network trains
    on; the input stays the ratings, the loss compares r_hat with r - b_ui on the observed entries
    (same mask, same weight decay), and the prediction is b_ui + r_hat, clipped. The network then
    spends its capacity on the interactions instead of the biases. On the validation split of
    u1.base (lambda 150, 3 networks) it took RMSE from 0.9000 to 0.8957. Feeding the residuals as
    the input too was much worse (0.9185): a residual near 0 looks like "not rated" to the encoder,
    so the input loses who rated the item.

CDAE (Wu, DuBois, Zheng, Ester, WSDM 2016)
    Implicit feedback y_u in {0,1}^M (rated = 1). Input dropout with probability q (kept
    entries scaled by 1/(1-q), eq. 5); a per-user input node V_u added to the hidden layer:
        z_u = sigmoid(W^T y~_u + V_u + b)   y_hat_u = sigmoid(W' z_u + b')     eq. (6)-(7)
    logistic loss on the observed items plus negatives (all unobserved items, or ``negatives``
    sampled per positive), + lambda/2 * (squared norms of all parameters), eq. (8).

mDA-CF (Li, Kawale, Fu, CIKM 2015), the version implemented here
    X (d_u x N): each user's rating row (ratings / r_max, the ``max_features`` most rated items)
    stacked with the user's side information (one-hot age group, gender, occupation); Y
    (d_v x M): each item's rating column with its genre flags. A bias row of ones is appended
    (X_b = [X; 1]). One linear marginalized denoising layer per side (Chen et al. ICML 2012:
    masking noise with probability p, integrated out in closed form) is coupled to a matrix
    factorization of the ratings:
        L = E||X - W1 X~_b||^2 + lam ||P1 U^T - W1 X_b||^2
          + E||Y - W2 Y~_b||^2 + lam ||P2 V^T - W2 Y_b||^2
          + alpha ||A (.) (R~ - U V^T)||^2 + beta (||U||^2 + ||V||^2)
    minimized by alternating exact updates (the paper's Algorithm 1):
        W1 = (E[X X~_b^T] + lam P1 U^T X_b^T) (E[X~_b X~_b^T] + lam X_b X_b^T)^-1   (mDA closed form)
        P1 = W1 X_b U (U^T U)^-1
        u_n = (lam P1^T P1 + alpha sum_{i in O_n} v_i v_i^T + beta I)^-1 (lam P1^T W1 x_n + alpha sum r~_ni v_i)
    and the same for W2, P2, V. E[.] uses the expected corruption statistics: with
    S = X_b X_b^T and q = (1-p, ..., 1-p, 1), E[X~X~^T] = S (.) q q^T with diagonal q (.) diag S,
    and E[X X~^T] = S (.) q^T (Chen et al. 2012, sec. 2).
    Where it differs from the paper: (1) U and V are updated by an exact per-row least-squares
    solve (ALS) instead of a gradient step (same objective, a larger step); (2) R~ = R minus the
    biased baseline mu + b_u + b_i (the paper factors R itself; without the biases plain MF is
    far worse on MovieLens); predictions are baseline + u.v; (3) one mDA layer per side (the
    paper allows stacking); (4) W is never formed: every product with it goes through one
    Cholesky factor of the fixed matrix E[X~X~^T] + lam X_b X_b^T, so an iteration costs
    O(d^2 k) after an O(d^3) start; d is capped by ``max_features`` (the most-rated items /
    users; the paper uses all) so ML-20M-sized catalogues still fit.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import linalg as sla
from scipy import sparse

from .base import ConfigBase, ConfigError, Recommender, check_choice, check_number, register, resolve_device
from .data import Ratings, random_split

__all__ = ["AutoRecNet", "autorec_loss", "ItemAutoRec", "UserAutoRec", "CDAE", "CDAENet", "MDACF", "mda_statistics"]

OPTIMIZERS = ("adam", "rprop")
DEVICES = ("auto", "cpu", "cuda")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


# ============================================================================ AutoRec
def _torch():
    import torch  # lazy: `import aecore.recsys` stays light

    return torch


def AutoRecNet(n_in: int, hidden: int):  # noqa: N802  (a factory that returns an nn.Module)
    """h = sigmoid(V r + mu), r_hat = W h + b. encoder = (V, mu): (K, D); decoder = (W, b): (D, K)."""
    torch = _torch()
    nn = torch.nn

    class _AutoRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(n_in, hidden)  # V (K, D), mu (K)
            self.decoder = nn.Linear(hidden, n_in)  # W (D, K), b (D)

        def encode(self, r):  # (B, D) -> (B, K)
            return torch.sigmoid(self.encoder(r))

        def forward(self, r):  # (B, D) -> (B, D)
            return self.decoder(self.encode(r))

    return _AutoRec()


def autorec_loss(net, r, mask, reg: float, n_rows: int, dropout: float = 0.0) -> dict:
    """Named terms of the AutoRec objective for one batch, divided by the number of rows:
    ``recon`` = per-row sum of squared errors on observed entries, batch mean;
    ``l2`` = reg / (2 n_rows) (||W||^2 + ||V||^2). ``dropout``: see ``autorec_loss_sparse``."""
    from ..objectives import squared_error

    torch = _torch()
    inp = r if dropout <= 0 else r * (torch.rand_like(r) >= dropout) / (1.0 - dropout)
    recon = net(inp)
    terms = {"recon": squared_error(recon, r, mask)}
    if reg > 0:
        terms["l2"] = (reg / (2.0 * n_rows)) * (net.encoder.weight.square().sum() + net.decoder.weight.square().sum())
    return terms


class _SparseRows:
    """A chunk of rows of a ratings matrix as torch CSR tensors, for the full-batch AutoRec step
    without densifying anything: X (B, D) with its transpose X^T (D, B) and the permutation that
    maps X's nonzero order to X^T's (so a gradient on the observed entries can be transposed).
    ``target``: the values the loss compares the output with, if not X's own (the residual
    AutoRec): a CSR matrix with X's pattern, kept as ``target`` (X's order)."""

    def __init__(self, x: sparse.csr_matrix, device, target: sparse.csr_matrix | None = None):
        import warnings

        torch = _torch()
        x = sparse.csr_matrix(x, dtype=np.float32)
        x.sort_indices()
        order = sparse.csr_matrix((np.arange(1, x.nnz + 1, dtype=np.float64), x.indices, x.indptr), shape=x.shape)
        xt = x.T.tocsr()
        xt.sort_indices()
        order_t = order.T.tocsr()
        order_t.sort_indices()

        def t(a, dtype):
            return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(device)

        self.shape, self.n = x.shape, x.shape[0]
        self.crow, self.col, self.val = t(x.indptr, np.int64), t(x.indices, np.int64), t(x.data, np.float32)
        if xt.nnz != x.nnz or order_t.nnz != x.nnz:  # (scipy keeps stored zeros: a rating of 0 is observed)
            raise ValueError(f"sparse rows: the transpose has {xt.nnz} entries, expected {x.nnz}")
        self.perm_t = t(order_t.data - 1, np.int64)  # X^T's k-th value is X's perm_t[k]-th
        self.target = self.val
        if target is not None:
            target = sparse.csr_matrix(target, dtype=np.float32)
            target.sort_indices()
            if not (np.array_equal(target.indptr, x.indptr) and np.array_equal(target.indices, x.indices)):
                raise ValueError("sparse rows: the target's observed entries differ from the input's")
            self.target = t(target.data, np.float32)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the ops used here are tested
            warnings.simplefilter("ignore", UserWarning)
            self.x = torch.sparse_csr_tensor(self.crow, self.col, self.val, x.shape)
            self.xt = torch.sparse_csr_tensor(t(xt.indptr, np.int64), t(xt.indices, np.int64),
                                              t(xt.data, np.float32), xt.shape)
            self.crow_t, self.col_t = self.xt.crow_indices(), self.xt.col_indices()

    def pattern(self, values, transposed: bool = False):
        """A CSR tensor with X's sparsity pattern (or X^T's) and the given values (X's order)."""
        torch = _torch()
        if transposed:
            return torch.sparse_csr_tensor(self.crow_t, self.col_t, values[self.perm_t], self.shape[::-1])
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape)


@functools.lru_cache(maxsize=1)
def _sparse_functions():
    """Two autograd functions for AutoRec on sparse rows (defined on first use: torch is lazy).

    encode: pre = X V^T + mu with X sparse (B, D): the cost is nnz K, not B D K; dV = dpre^T X.
    observed: r_hat at X's observed entries only, r_hat[n, d] = h_n . W_d + b_d (a sampled
    matmul, SDDMM); its gradient G is sparse with the same pattern: dh = G W, dW = G^T h, db."""
    torch = _torch()

    class Encode(torch.autograd.Function):
        @staticmethod
        def forward(ctx, rows: _SparseRows, values, weight, bias):  # X's pattern with values, (K, D), (K,) -> (B, K)
            if values is rows.val:
                x, ctx.xt = rows.x, rows.xt
            else:  # corrupted inputs: the same pattern, other values
                x, ctx.xt = rows.pattern(values), rows.pattern(values, transposed=True)
            return torch.addmm(bias, x, weight.t())  # broadcast bias + X V^T

        @staticmethod
        def backward(ctx, g):  # g (B, K)
            return None, None, (ctx.xt @ g).t(), g.sum(0)

    class Observed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, rows: _SparseRows, h, weight, bias):  # h (B, K), W (D, K), b (D) -> (nnz,)
            ctx.rows = rows
            ctx.save_for_backward(h, weight)
            zeros = rows.pattern(torch.zeros_like(rows.val))
            return torch.sparse.sampled_addmm(zeros, h, weight.t()).values() + bias[rows.col]

        @staticmethod
        def backward(ctx, g):  # g (nnz,) in X's order
            h, weight = ctx.saved_tensors
            rows = ctx.rows
            gh = rows.pattern(g) @ weight  # (B, K)
            gw = rows.pattern(g, transposed=True) @ h  # (D, K)
            gb = torch.zeros(rows.shape[1], dtype=g.dtype, device=g.device).index_add_(0, rows.col, g)
            return None, gh, gw, gb

    return Encode, Observed


def autorec_loss_sparse(net, rows: _SparseRows, reg: float, n_rows: int, dropout: float = 0.0) -> dict:
    """``autorec_loss`` for sparse rows (the same terms and values): ``recon`` = per-row sum of
    squared errors on the observed entries, mean over the chunk's rows; ``l2`` as there.
    ``dropout`` q > 0: each observed input is dropped with probability q (kept ones scaled by
    1/(1-q)) while the loss still covers every observed rating, so the network learns to predict
    ratings that are not in its input (a denoising AutoRec; no corruption at prediction time)."""
    encode, observed = _sparse_functions()
    torch = _torch()
    values = rows.val
    if dropout > 0:
        keep = torch.rand(values.shape, device=values.device) >= dropout  # torch's generator, seeded by fit
        values = values * keep / (1.0 - dropout)
    h = torch.sigmoid(encode.apply(rows, values, net.encoder.weight, net.encoder.bias))  # (B, K)
    r_hat = observed.apply(rows, h, net.decoder.weight, net.decoder.bias)  # (nnz,)
    terms = {"recon": (r_hat - rows.target).square().sum() / rows.n}  # target: rows.val unless residual
    if reg > 0:
        terms["l2"] = (reg / (2.0 * n_rows)) * (net.encoder.weight.square().sum() + net.decoder.weight.square().sum())
    return terms


@contextlib.contextmanager
def _threads(n: int):
    """Use n torch CPU threads inside the block (0: leave torch's setting). On a busy machine
    torch's spinning intra-op threads can make small matmuls 10x slower than one thread."""
    torch = _torch()
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0:
            torch.set_num_threads(old)


def _chunk_rows(width: int, budget: int = 1 << 22) -> int:
    """Rows per dense chunk at inference: about ``budget`` values (16 MB of float32)."""
    return max(1, budget // max(width, 1))

def _encode_csr(net, csr, with_rows: bool = False) -> np.ndarray:
    """Codes of every row of a sparse matrix, densified a chunk of rows at a time (never all N x M).
    ``with_rows`` also passes each row's index (CDAE's per-user input node)."""
    torch = _torch()
    net.eval()
    device = next(net.parameters()).device
    codes = []
    with torch.no_grad():
        step = _chunk_rows(csr.shape[1])
        for s in range(0, csr.shape[0], step):
            x = torch.from_numpy(csr[s:s + step].toarray()).to(device)
            extra = (torch.arange(s, min(s + step, csr.shape[0]), device=device),) if with_rows else ()
            codes.append(net.encode(x, *extra).cpu().numpy())
    return np.concatenate(codes).astype(np.float32)


class _NetWeights:
    """Numpy copies of a one-hidden-layer net's weights, for inference without torch."""

    def _copy_weights(self) -> None:
        net = self.net_
        self.dec_w_ = net.decoder.weight.detach().cpu().numpy().copy()  # (D, K)
        self.dec_b_ = net.decoder.bias.detach().cpu().numpy().copy()  # (D,)
        self.enc_w_ = net.encoder.weight.detach().cpu().numpy().copy()  # (K, D)
        self.enc_b_ = net.encoder.bias.detach().cpu().numpy().copy()  # (K,)



def _batches(n: int, size: int, rng: np.random.Generator | None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, size):
        yield order[s:s + size]


class _AutoRec(_NetWeights, Recommender):
    """Shared by I-AutoRec and U-AutoRec; ``orientation`` says what a row is."""

    orientation: ClassVar[str] = "item"

    @dataclass(frozen=True)
    class Config(ConfigBase):
        hidden: int = 500
        # lambda of eq. (2), paper units, and the ensemble size: chosen for I-AutoRec on a validation
        # split of ML-100K u1.base only (aecore.recsys.selection; bench.recsys shows the table)
        reg: float = 150.0
        epochs: int = 500  # the most; early stopping on the validation split picks the best
        lr: float = 1e-4  # Rprop: the initial step; Adam: the learning rate (try 1e-3)
        batch_size: int = 64  # Adam's mini-batch; Rprop densifies max(batch_size, 256) rows at a time
        optimizer: str = "rprop"
        valid_fraction: float = 0.05
        patience: int = 30
        refit: bool = True  # after choosing the epoch count, train again on all training ratings
        ensemble: int = 3  # networks averaged: seeds seed, seed+1, ..., each its own epoch choice and refit
        dropout: float = 0.0  # input dropout while training (denoising); the loss keeps every rating
        # residual AutoRec: from the same input the network predicts r - (mu + b_u + b_i), the ratings
        # minus the biased baseline of the ratings it is trained on; predictions: baseline + output.
        # Chosen for I-AutoRec on the validation split of ML-100K u1.base (selection.py)
        residual: bool = True
        seed: int = 0
        device: str = "cpu"
        threads: int = 0  # torch CPU threads while training; 0 = torch's setting

        def __post_init__(self):
            if not isinstance(self.refit, bool):
                raise ConfigError(f"refit={self.refit!r} must be true or false")
            if not isinstance(self.residual, bool):
                raise ConfigError(f"residual={self.residual!r} must be true or false")
            check_number("hidden", self.hidden, 1, 100_000, integer=True)
            check_number("reg", self.reg, 0.0)
            check_number("epochs", self.epochs, 1, 100_000, integer=True)
            check_number("lr", self.lr, 0.0, 10.0, lo_open=True)
            check_number("batch_size", self.batch_size, 1, 1_000_000, integer=True)
            check_choice("optimizer", self.optimizer, OPTIMIZERS)
            check_number("valid_fraction", self.valid_fraction, 0.0, 0.5)
            check_number("patience", self.patience, 1, 100_000, integer=True)
            check_number("ensemble", self.ensemble, 1, 100, integer=True)
            check_number("dropout", self.dropout, 0.0, 0.95)
            check_number("seed", self.seed, 0, 2**63 - 1 - self.ensemble, integer=True)
            check_choice("device", self.device, DEVICES)
            check_number("threads", self.threads, 0, 1024, integer=True)

    # rows of the training matrix, and pairs -> (row, column)
    def _rows(self, ratings: Ratings):
        if self.orientation == "item":
            return ratings.item_csr(), ratings.item_mask_csr()
        return ratings.csr(), ratings.mask_csr()

    def _row_col(self, users, items):
        return (items, users) if self.orientation == "item" else (users, items)

    def _fit(self, train, data, progress):
        with _threads(self.config.threads):
            self._fit_autorec(train, data, progress)

    def _fit_autorec(self, train, data, progress):
        """Network k (seed ``seed + k``, k < ``ensemble``) chooses its epoch count on its own
        validation split (``valid_fraction`` of the training ratings, seeded by its seed), then is
        trained again from scratch for that many epochs on every training rating (``refit``; else
        the selection network is kept). The ensemble averages the networks: it is exactly the mean
        of ``ensemble`` single fits with seeds seed, seed+1, ... . ``history_`` holds network 1's
        epochs (one validation curve); the others' are in ``member_histories_``."""
        import time

        c = self.config
        t0, cpu0 = time.perf_counter(), time.process_time()
        self.best_epoch_, self.best_valid_rmse_ = None, math.nan
        self.refit_seconds_ = self._after_best_seconds = self._after_best_cpu = 0.0
        self.member_histories_: list[list[dict]] = []
        from .baselines import BiasedBaseline

        offset = self.baseline_ if c.residual else None  # residual: mu + b_u + b_i fitted on all of train
        nets, chosen, kept_offsets = [], [], []
        for k in range(c.ensemble):
            seed, tag = c.seed + k, (f" {k + 1}/{c.ensemble}" if c.ensemble > 1 else "")
            log = self.history_ if k == 0 else []
            if k > 0:
                self.member_histories_.append(log)
            if c.valid_fraction > 0:
                fit_part, valid = random_split(train, c.valid_fraction, seed)
                # the baseline of the fit part alone, so the validation ratings stay unseen: the
                # residual's offset, and the prediction for a pair whose user or item it lacks
                valid_base = BiasedBaseline().fit_biases(fit_part)
                fit_offset = valid_base if c.residual else None
                net = self._train(fit_part, valid, c.epochs, progress, "select" + tag, seed, log, fit_offset,
                                  valid_base)
                choice = (self.best_epoch_, self.best_valid_rmse_, self.best_epoch_seconds_)
                # the chosen epochs again, from scratch, on every training rating; else (or when
                # stopped while choosing) the selection network is kept, with the offset it learned
                # the residuals of
                kept = not c.refit or self._stopping()
                if not kept:
                    net = self._train(train, None, self.best_epoch_, progress, "refit" + tag, seed, log, offset)
            else:
                net = self._train(train, None, c.epochs, progress, "train" + tag, seed, log, offset)
                choice, kept = (len(log), math.nan, math.nan), False  # (fewer than c.epochs when stopped)
            if self._stopping() and k > 0:  # network k was cut short: the ensemble is the finished ones
                self.member_histories_.pop()
                break
            chosen.append(choice)
            nets.append(net)
            if kept:
                kept_offsets.append(fit_offset)
            if self._stopping():
                break  # network 1, cut short, is the model; the others are not trained
        if c.residual and kept_offsets:
            # the ensemble's prediction is the mean of (network k + offset k) = the mean network + the
            # mean offset, and a mean of biased baselines is the baseline of the mean mu, b_u and b_i
            offset = BiasedBaseline()
            offset.mu_ = float(np.mean([b.mu_ for b in kept_offsets]))
            offset.bu_ = np.mean([b.bu_ for b in kept_offsets], axis=0)
            offset.bi_ = np.mean([b.bi_ for b in kept_offsets], axis=0)
        self.best_epochs_ = [e for e, _, _ in chosen]  # per network
        self.best_epoch_, self.best_valid_rmse_, self.best_epoch_seconds_ = chosen[0]  # network 1's
        # the time to train the final model(s) to the chosen epoch: selection up to its best epoch
        # plus every network's run to that epoch (the patience epochs after it are not counted)
        self.train_seconds_ = time.perf_counter() - t0 - self._after_best_seconds
        self.train_cpu_seconds_ = time.process_time() - cpu0 - self._after_best_cpu  # CPU time of this process
        # inference uses every training rating as input (the validation ones included)
        self._offset = offset
        self._snapshot_ensemble(nets, train)

    def _residual_csr(self, x_csr: sparse.csr_matrix, offset) -> sparse.csr_matrix:
        """The training targets of the residual AutoRec: X's pattern, values r - (mu + b_u + b_i)."""
        rows = np.repeat(np.arange(x_csr.shape[0]), np.diff(x_csr.indptr))
        users, items = self._row_col(rows, x_csr.indices)  # (a row index and a column index -> user, item)
        t = x_csr.copy()
        t.data = (t.data - offset.baseline_pairs(users, items)).astype(np.float32)
        return t

    def _snapshot_ensemble(self, nets, ratings: Ratings) -> None:
        """The average of the networks' predictions is one wider network: codes side by side
        (rows, nK), decoders side by side and divided by n, biases averaged. So prediction,
        scoring and fold-in below work unchanged for n = 1 and n > 1."""
        x_csr = self._rows(ratings)[0]
        n = len(nets)
        codes, dec_w, dec_b, enc_w, enc_b = [], [], [], [], []
        for net in nets:
            self.net_ = net
            codes.append(_encode_csr(net, x_csr))
            self._copy_weights()
            dec_w.append(self.dec_w_ / n)
            dec_b.append(self.dec_b_)
            enc_w.append(self.enc_w_)
            enc_b.append(self.enc_b_)
        self.codes_ = np.hstack(codes)  # (rows, nK)
        self.dec_w_ = np.hstack(dec_w)  # (D, nK)
        self.dec_b_ = np.mean(dec_b, axis=0).astype(np.float32)  # (D,)
        self.enc_w_ = np.vstack(enc_w)  # (nK, D)
        self.enc_b_ = np.concatenate(enc_b)  # (nK,)
        self._known_u = ratings.user_counts() > 0
        self._known_i = ratings.item_counts() > 0

    def _train(self, ratings: Ratings, valid: Ratings | None, epochs: int, progress, phase: str, seed: int,
               log: list, offset=None, valid_base=None) -> object:
        """Train a fresh network on ``ratings`` for up to ``epochs``; with ``valid``, stop after
        ``patience`` epochs without a better validation RMSE and keep the best epoch's weights
        (``best_epoch_`` etc. say which). Epoch rows go to ``log``. Returns the network.
        ``offset`` (a fitted BiasedBaseline; the residual AutoRec): the input stays the ratings, the
        loss compares the output with r - offset, and validation predictions add the offset back.
        ``valid_base`` (with ``valid``): the biased baseline of ``ratings``, for validation pairs
        whose user or item ``ratings`` lacks."""
        import time

        torch = _torch()
        c = self.config
        device = resolve_device(c.device)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        x_csr = self._rows(ratings)[0]
        t_csr = self._residual_csr(x_csr, offset) if offset is not None else None
        self._offset = offset
        n_in = x_csr.shape[1]
        # rows with no rating add nothing to eq. (2) but weight decay: train on the others, and
        # divide the objective by their number (lambda keeps the paper's meaning)
        active = np.flatnonzero(np.diff(x_csr.indptr) > 0)
        n_active = len(active)
        net = AutoRecNet(n_in, c.hidden).to(device)
        self.net_ = net
        params = list(net.parameters())
        from ..training import optimizer_and_step

        # Adam fused on the CPU
        opt, opt_step = optimizer_and_step(torch.optim.Adam if c.optimizer == "adam" else torch.optim.Rprop,
                                           params, lr=c.lr)

        # nothing is densified: Rprop takes the full batch in chunks of rows whose codes (B, K) hold
        # about 4M values (ML-100K: one chunk), Adam one mini-batch of rows at a time
        def sparse_rows(idx):
            return _SparseRows(x_csr[active[idx]], device, None if t_csr is None else t_csr[active[idx]])

        parts = [sparse_rows(idx) for idx in _batches(n_active, _chunk_rows(c.hidden), None)]

        def full_batch_closure():  # the paper's full-batch objective, gradients accumulated
            opt.zero_grad()
            sums = {}
            for part in parts:
                terms = autorec_loss_sparse(net, part, c.reg, n_active, c.dropout)
                # per-row sums over the whole set, divided by rows; l2 once over all batches
                w = part.n / n_active
                sum(terms.values()).mul(w).backward()
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * w
            return sums

        def sparse_codes():  # (rows, K) codes from the sparse chunks; a row with no rating: sigmoid(mu)
            with torch.no_grad():
                out = np.tile(torch.sigmoid(net.encoder.bias).cpu().numpy(), (x_csr.shape[0], 1))
                start = 0
                for part in parts:
                    h = torch.sigmoid(torch.addmm(net.encoder.bias, part.x, net.encoder.weight.t()))
                    out[active[start:start + part.n]] = h.cpu().numpy()
                    start += part.n
            return out

        t0, cpu0 = time.perf_counter(), time.process_time()
        best, best_cpu = (math.inf, 0, None, 0.0), 0.0
        for epoch in range(1, epochs + 1):
            net.train()
            if c.optimizer == "adam":
                sums, n = {}, 0
                for idx in _batches(n_active, c.batch_size, rng):
                    terms = autorec_loss_sparse(net, sparse_rows(idx), c.reg, n_active, c.dropout)
                    loss = sum(terms.values())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt_step()
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(idx)
                    n += len(idx)
                terms_avg = {k: v / n for k, v in sums.items()}
            else:
                terms_avg = {}
                opt.step(lambda: terms_avg.update(full_batch_closure()) or torch.tensor(0.0))
            train_loss = sum(terms_avg.values())
            if not math.isfinite(train_loss):
                raise ValueError(f"{self.name}: the training loss became {train_loss} at epoch {epoch}; "
                                 f"lower lr={c.lr}")
            row = {"phase": phase, "epoch": epoch, "loss": train_loss, **terms_avg}
            stop = False
            if valid is not None:
                self._snapshot(x_csr, ratings, sparse_codes())
                row["valid_rmse"] = v_rmse = self._valid_rmse(valid, valid_base)
                if v_rmse < best[0] - 1e-5:
                    best = (v_rmse, epoch, copy.deepcopy(net.state_dict()), time.perf_counter() - t0)
                    best_cpu = time.process_time() - cpu0
                stop = epoch - best[1] >= c.patience
            row["seconds"] = time.perf_counter() - t0
            log.append(row)
            if progress:
                progress(dict(row, epochs=epochs, best_epoch=best[1] or epoch))
            if stop or self._stopping():
                break
        if valid is not None:
            net.load_state_dict(best[2])
            self.best_epoch_, self.best_valid_rmse_, self.best_epoch_seconds_ = best[1], best[0], best[3]
            self._after_best_seconds += time.perf_counter() - t0 - best[3]  # the patience epochs
            self._after_best_cpu += time.process_time() - cpu0 - best_cpu
        else:
            self.refit_seconds_ += time.perf_counter() - t0
        return net

    def _snapshot(self, x_csr, ratings: Ratings, codes: np.ndarray | None = None) -> None:
        """Numpy copies for inference: codes of every row, decoder W, b; encoder V, mu."""
        self.codes_ = _encode_csr(self.net_, x_csr) if codes is None else codes  # (rows, K)
        self._copy_weights()
        self._known_u = ratings.user_counts() > 0
        self._known_i = ratings.item_counts() > 0

    def _valid_rmse(self, valid: Ratings, base) -> float:
        """RMSE on ``valid``; a pair whose user or item the training part lacks gets ``base``
        (a biased baseline fitted on that part alone)."""
        pred = self._predict_raw(valid.user, valid.item)
        known = self._known_u[valid.user] & self._known_i[valid.item]
        pred = np.where(known, pred, base.baseline_pairs(valid.user, valid.item))
        pred = np.clip(pred, *self.rating_range_)
        return float(np.sqrt(np.mean(np.square(pred - valid.rating))))

    def _predict_raw(self, users, items):
        row, col = self._row_col(users, items)
        # r_hat[row, col] = W[col] . h(row) + b[col]  (+ mu + b_u + b_i for the residual AutoRec)
        out = np.einsum("nk,nk->n", self.codes_[row], self.dec_w_[col]) + self.dec_b_[col]
        offset = getattr(self, "_offset", None)
        return out if offset is None else out + offset.baseline_pairs(users, items)

    def _score_raw(self, users):
        if self.orientation == "item":  # (B, K) @ (K, M): each item's code read out at the users' rows of W
            s = self.dec_w_[users] @ self.codes_.T + self.dec_b_[users][:, None]
        else:
            s = self.codes_[users] @ self.dec_w_.T + self.dec_b_[None, :]  # decode the users' codes
        offset = getattr(self, "_offset", None)
        return s if offset is None else s + offset.baseline_rows(users)

    def _fold_in_raw(self, items, ratings) -> np.ndarray:
        """Predicted ratings (M,) for a new user who rated ``items`` with ``ratings``.

        U-AutoRec: the new user's rating vector goes through the network (encode, decode).
        I-AutoRec: a user is a column, so there is no input slot for a new one; with every item
        code h(r_i) held fixed, the new user's decoder row (w, b) minimizes the training objective
        restricted to it: sum_{i rated} (r_i - w.h_i - b)^2 + lambda/2 ||w||^2 (ridge regression).
        Items nobody rated in training get mu + b_i (the baseline, with this user's b_u = 0).
        Residual model: the user's b_u = sum(r - mu - b_i) / (reg_user + n) (the baseline's own
        fold-in); U-AutoRec adds mu + b_u + b_i to the output, I-AutoRec's ridge fits r - that.
        """
        r = np.asarray(ratings, np.float64)
        offset = 0.0
        if self.config.residual:  # the new user's b_u as the biased baseline fits it (its fold-in)
            b = self.baseline_
            bu = float(np.sum(r - b.mu_ - b.bi_[items]) / (b.config.reg_user + len(items)))
            offset = b.mu_ + bu + b.bi_  # (M,)
        if self.orientation == "user":
            x = np.zeros(self.n_items_, np.float64)
            x[items] = r
            h = _sigmoid(self.enc_w_ @ x + self.enc_b_)
            s = self.dec_w_ @ h + self.dec_b_ + offset
        else:
            h = self.codes_[items].astype(np.float64)  # (n, K)
            xb = np.hstack([h, np.ones((len(items), 1))])
            pen = np.full(xb.shape[1], max(self.config.reg, 1e-6) / 2.0)
            pen[-1] = 1e-6  # the bias is not decayed
            y = r - offset[items] if self.config.residual else r  # the residual AutoRec's targets
            w = np.linalg.solve(xb.T @ xb + np.diag(pen), xb.T @ y)
            s = self.codes_ @ w[:-1] + w[-1] + offset
        return np.where(self.known_items_, s, self.baseline_.mu_ + self.baseline_.bi_)

    @property
    def fold_in_how(self) -> str:
        if self.orientation == "user":
            return ("U-AutoRec: your rating vector goes through the network, encoder then decoder, exactly like a "
                    "training user's; unrated movies come out of the reconstruction" + (
                        " (added to mu + b_u + b_i, your b_u the regularized mean of r - mu - b_i)."
                        if self.config.residual else "."))
        how = ("I-AutoRec: a user is an input slot of every item vector, and there is none for you; so every "
               "movie's code h(r_i) stays fixed and your decoder row (w, b) is fitted to your ratings by the "
               "training objective restricted to it (ridge regression on the item codes, penalty λ/2).")
        if self.config.residual:
            how += (" Residual model: your bias b_u comes first (the regularized mean of r - mu - b_i), the ridge "
                    "fits what mu + b_u + b_i leaves over, and the prediction adds them back.")
        return how

    def item_embeddings(self):
        n = self.config.ensemble
        k = f"K = {self.config.hidden}" + (f", {n} networks side by side" if n > 1 else "")
        if self.orientation == "item":
            return self.codes_, f"I-AutoRec hidden codes h(r_i) of each item ({k})"
        return self.dec_w_, f"U-AutoRec decoder rows W_i: each item's output weights ({k})"


@register("autorec-item")
class ItemAutoRec(_AutoRec):
    summary = "I-AutoRec: reconstructs each item's vector of user ratings (Sedhain et al. 2015)"
    orientation = "item"


@register("autorec-user")
class UserAutoRec(_AutoRec):
    summary = "U-AutoRec: reconstructs each user's vector of item ratings (Sedhain et al. 2015)"
    orientation = "user"

    @dataclass(frozen=True)
    class Config(_AutoRec.Config):
        # validation split of ML-100K u1.base: lambda 10 / 30 / 100 / 300 -> RMSE 0.955 / 0.949 / 0.947 / 0.962
        reg: float = 100.0
        ensemble: int = 1  # (the ensemble and the residual target were selected for I-AutoRec only)
        residual: bool = False


# ============================================================================ CDAE
def CDAENet(n_users: int, n_items: int, hidden: int):  # noqa: N802
    """z = sigmoid(W^T y~ + V_u + b); logits = W' z + b'. Wu et al. 2016, eq. (6)-(7)."""
    torch = _torch()
    nn = torch.nn

    class _CDAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(n_items, hidden)  # W^T (K, M), b (K)
            self.user_node = nn.Embedding(n_users, hidden)  # V_u (K) per user
            self.decoder = nn.Linear(hidden, n_items)  # W' (M, K), b' (M)
            nn.init.normal_(self.user_node.weight, std=0.01)

        def encode(self, y, users):  # (B, M), (B,) -> (B, K)
            return torch.sigmoid(self.encoder(y) + self.user_node(users))

        def forward(self, y, users):  # logits (B, M); y_hat = sigmoid(logits)
            return self.decoder(self.encode(y, users))

    return _CDAE()


@register("cdae")
class CDAE(_NetWeights, Recommender):
    summary = "CDAE: denoising AE on implicit feedback with a per-user node, for top-N (Wu et al. 2016)"
    predicts_ratings = False

    @dataclass(frozen=True)
    class Config(ConfigBase):
        hidden: int = 50
        corruption: float = 0.2  # dropout probability q of the input
        reg: float = 1.0  # lambda of eq. (8), in units of the whole objective
        negatives: int = 0  # 0: every unobserved item is a negative; n: n sampled per positive
        epochs: int = 200
        lr: float = 1e-3
        batch_size: int = 64
        valid_fraction: float = 0.05
        patience: int = 20
        seed: int = 0
        device: str = "cpu"
        threads: int = 0  # torch CPU threads while training; 0 = torch's setting

        def __post_init__(self):
            check_number("hidden", self.hidden, 1, 100_000, integer=True)
            check_number("corruption", self.corruption, 0.0, 0.95)
            check_number("reg", self.reg, 0.0)
            check_number("negatives", self.negatives, 0, 10_000, integer=True)
            check_number("epochs", self.epochs, 1, 100_000, integer=True)
            check_number("lr", self.lr, 0.0, 10.0, lo_open=True)
            check_number("batch_size", self.batch_size, 1, 1_000_000, integer=True)
            check_number("valid_fraction", self.valid_fraction, 0.0, 0.5)
            check_number("patience", self.patience, 1, 100_000, integer=True)
            check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
            check_choice("device", self.device, DEVICES)
            check_number("threads", self.threads, 0, 1024, integer=True)

    def _loss(self, net, y, users, mask, n_users):
        torch = _torch()
        F = torch.nn.functional
        c = self.config
        y_in = F.dropout(y, p=c.corruption, training=True) if c.corruption > 0 else y  # eq. (5): kept / (1-q)
        logits = net(y_in, users)
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        if mask is not None:
            per = per * mask
        terms = {"logistic": per.sum(dim=1).mean()}
        if c.reg > 0:
            sq = sum(p.square().sum() for p in (net.encoder.weight, net.decoder.weight, net.encoder.bias,
                                                  net.decoder.bias))
            sq = sq + net.user_node(users).square().sum() * (n_users / len(users))  # this batch's V_u, rescaled
            terms["l2"] = (c.reg / (2.0 * n_users)) * sq
        return terms

    def _fit(self, train, data, progress):
        with _threads(self.config.threads):
            self._fit_cdae(train, data, progress)

    def _fit_cdae(self, train, data, progress):
        torch = _torch()
        from .evaluate import recall_ndcg_at_k

        c = self.config
        device = resolve_device(c.device)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        fit_part, valid = random_split(train, c.valid_fraction, c.seed) if c.valid_fraction > 0 else (train, None)
        y_csr = fit_part.mask_csr()  # (N, M) implicit feedback: rated = 1
        n_users, n_items = y_csr.shape
        net = CDAENet(n_users, n_items, c.hidden).to(device)
        self.net_ = net
        from ..training import optimizer_and_step

        opt, opt_step = optimizer_and_step(torch.optim.Adam, net.parameters(), lr=c.lr)  # fused on the CPU
        active = np.flatnonzero(np.diff(y_csr.indptr) > 0)  # users with at least one training item
        best = (-math.inf, 0, None)
        for epoch in range(1, c.epochs + 1):
            net.train()
            total, n = 0.0, 0
            for b in _batches(len(active), c.batch_size, rng):
                u = active[b]
                y = torch.from_numpy(y_csr[u].toarray()).to(device)
                mask = None
                if c.negatives > 0:  # positives + sampled negatives (a sampled positive stays positive)
                    n_pos = np.diff(y_csr[u].indptr)
                    m = y_csr[u].toarray()
                    rows = np.repeat(np.arange(len(u)), n_pos * c.negatives)
                    m[rows, rng.integers(0, n_items, len(rows))] = 1
                    mask = torch.from_numpy(m).to(device)
                users_t = torch.from_numpy(u).to(device)
                terms = self._loss(net, y, users_t, mask, n_users)
                loss = sum(terms.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt_step()
                total += float(loss.detach()) * len(u)
                n += len(u)
            row = {"epoch": epoch, "loss": total / max(n, 1)}
            if valid is not None:
                self._snapshot(y_csr)
                vu = np.flatnonzero(np.diff(valid.csr().indptr) > 0)
                rec, ndcg, _ = recall_ndcg_at_k(self._score_raw(vu), valid.csr()[vu], y_csr[vu], 10)
                row["valid_recall@10"], row["valid_ndcg@10"] = float(np.mean(rec)), float(np.mean(ndcg))
                if row["valid_ndcg@10"] > best[0] + 1e-5:
                    best = (row["valid_ndcg@10"], epoch, copy.deepcopy(net.state_dict()))
                elif epoch - best[1] >= c.patience:
                    self.history_.append(row)
                    break
            if not math.isfinite(row["loss"]):
                raise ValueError(f"cdae: the training loss became {row['loss']} at epoch {epoch}; lower lr={c.lr}")
            self.history_.append(row)
            if progress:
                progress(dict(row, epochs=c.epochs, best_epoch=best[1] or epoch))
            if self._stopping():
                break
        if best[2] is not None:
            net.load_state_dict(best[2])
        self.best_epoch_ = best[1] or len(self.history_)
        self._snapshot(train.mask_csr())

    def _snapshot(self, y_csr) -> None:
        self.codes_ = _encode_csr(self.net_, y_csr, with_rows=True)  # (N, K) user codes z_u, no corruption
        self._copy_weights()

    def _score_raw(self, users):
        return self.codes_[users] @ self.dec_w_.T + self.dec_b_[None, :]  # logits (B, M)

    fold_in_how = ("CDAE: the movies you rated become 1s in the input, which goes through the network with no "
                   "user node (a new user has none); the output is the probability that you would pick each movie.")

    def _fold_in_raw(self, items, ratings) -> np.ndarray:
        """Logits (M,) for a new user: their rated items as 1s, no user node (V_new = 0)."""
        y = np.zeros(self.n_items_)
        y[items] = 1.0  # (fold_in passes int64 indices)
        z = _sigmoid(self.enc_w_ @ y + self.enc_b_)
        return (self.dec_w_ @ z + self.dec_b_).astype(np.float32)

    def item_embeddings(self):
        return self.dec_w_, "CDAE decoder rows W'_i: each item's output weights (K = %d)" % self.dec_w_.shape[1]


# ============================================================================ mDA-CF
def mda_statistics(x_b: sparse.csr_matrix, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected statistics of masking noise for an input with a bias row (Chen et al. 2012).

    x_b: (d+1, n) sparse, last row all ones (the bias, never corrupted); p: drop probability.
    Returns S = X_b X_b^T (d+1, d+1); EQ = E[X~_b X~_b^T]; EP = E[X X~_b^T] (d, d+1).
    """
    s = np.asarray((x_b @ x_b.T).todense(), dtype=np.float64)
    q = np.full(s.shape[0], 1.0 - p)
    q[-1] = 1.0
    eq = s * np.outer(q, q)
    np.fill_diagonal(eq, q * np.diag(s))
    ep = s[:-1, :] * q[None, :]
    return s, eq, ep


class _MDASide:
    """One side (users or items) of mDA-CF: its input X_b, the Cholesky factor of
    E[X~X~^T] + lam X_b X_b^T, and the projection P (d x k). W stays implicit."""

    def __init__(self, x: sparse.csr_matrix, p: float, lam: float, k: int):
        d, n = x.shape
        self.x_b = sparse.vstack([x, sparse.csr_matrix(np.ones((1, n)))]).tocsr()  # (d+1, n)
        s, eq, self.ep = mda_statistics(self.x_b, p)
        a = eq + lam * s
        a[np.diag_indices_from(a)] += 1e-5 * max(1.0, float(np.mean(np.diag(a))))  # ridge, as in mDA's 1e-5 I
        self.chol = sla.cho_factor(a, lower=True, check_finite=False)
        self.lam = lam
        self.p_mat = np.zeros((d, k))

    def step(self, u: np.ndarray) -> np.ndarray:
        """W-step then P-step for the current factors u (n, k); returns lam P^T W X_b (k, n)."""
        lam = self.lam
        xu = np.asarray(self.x_b @ u)  # (d+1, k) = X_b U
        p_old = self.p_mat
        # W = (EP + lam P_old (X_b U)^T) A^-1, never formed.
        c = sla.cho_solve(self.chol, xu, check_finite=False)  # A^-1 X_b U  (d+1, k)
        w_xu = self.ep @ c + lam * p_old @ (xu.T @ c)  # W X_b U  (d, k)
        utu = u.T @ u + 1e-8 * np.eye(u.shape[1])
        p_new = np.linalg.solve(utu, w_xu.T).T  # P = W X_b U (U^T U)^-1   (d, k)
        # P^T W X_b = (A^-1 (EP^T P + lam X_b U P_old^T P))^T X_b
        g = sla.cho_solve(self.chol, self.ep.T @ p_new + lam * xu @ (p_old.T @ p_new), check_finite=False)
        self.p_mat = p_new
        return lam * np.asarray((self.x_b.T @ g).T)  # (k, n)

    def ptp(self) -> np.ndarray:
        return self.p_mat.T @ self.p_mat


def _als_rows(target: np.ndarray, base_a: np.ndarray, obs: sparse.csr_matrix, res: sparse.csr_matrix,
              other: np.ndarray, alpha: float, batch: int = 2048) -> np.ndarray:
    """Solve (base_a + alpha sum_{j in O_n} o_j o_j^T) x_n = target_n + alpha sum_j r_nj o_j per row n.

    target: (n, k); base_a: (k, k); obs: (n, m) 0/1; res: (n, m) residual ratings; other: (m, k).
    """
    n, k = target.shape
    outer = np.einsum("mi,mj->mij", other, other).reshape(len(other), k * k)  # (m, k^2)
    out = np.empty_like(target)
    for s in range(0, n, batch):
        sl = slice(s, min(s + batch, n))
        a = base_a[None] + alpha * np.asarray(obs[sl] @ outer).reshape(-1, k, k)
        rhs = target[sl] + alpha * np.asarray(res[sl] @ other)
        out[sl] = np.linalg.solve(a, rhs[..., None])[..., 0]
    return out


def _top_columns(counts: np.ndarray, cap: int) -> np.ndarray:
    order = np.argsort(-counts, kind="stable")
    keep = order[:cap]
    return np.sort(keep[counts[keep] > 0])


@register("mdacf")
class MDACF(Recommender):
    summary = "mDA-CF: marginalized denoising AEs on ratings + side info, coupled with MF (Li et al. 2015)"

    @dataclass(frozen=True)
    class Config(ConfigBase):
        factors: int = 10  # k
        corruption: float = 0.3  # p, masking noise of the mDA inputs
        lam: float = 1.0  # coupling of the mDA codes with the factors
        alpha: float = 1.0  # weight of the rating fit
        beta: float = 10.0  # L2 on U and V
        iterations: int = 30  # the most; the best on the validation split is kept
        max_features: int = 2000  # most-rated items (users) in the users' (items') mDA input
        side_info: bool = True
        valid_fraction: float = 0.05
        seed: int = 0

        def __post_init__(self):
            check_number("factors", self.factors, 1, 10_000, integer=True)
            check_number("corruption", self.corruption, 0.0, 0.95)
            check_number("lam", self.lam, 0.0)
            check_number("alpha", self.alpha, 0.0, lo_open=True)
            check_number("beta", self.beta, 0.0)
            check_number("iterations", self.iterations, 1, 10_000, integer=True)
            check_number("max_features", self.max_features, 1, 50_000, integer=True)
            if not isinstance(self.side_info, bool):
                raise ConfigError(f"side_info={self.side_info!r} must be true or false")
            check_number("valid_fraction", self.valid_fraction, 0.0, 0.5)
            check_number("seed", self.seed, 0, 2**63 - 1, integer=True)

    def _inputs(self, fit: Ratings, data):
        """X (d_u x N) and Y (d_v x M): scaled rating rows + side information, sparse."""
        c = self.config
        scale = max(abs(self.rating_range_[1]), 1e-6)
        r = fit.csr().astype(np.float64) / scale  # (N, M)
        items_kept = _top_columns(fit.item_counts(), c.max_features)
        users_kept = _top_columns(fit.user_counts(), c.max_features)
        xu = [r[:, items_kept]]
        xv = [r.T.tocsr()[:, users_kept]]
        if c.side_info and data is not None:
            if data.user_features is not None:
                xu.append(sparse.csr_matrix(data.user_features.astype(np.float64)))
            if data.item_genres is not None:
                xv.append(sparse.csr_matrix(data.item_genres.astype(np.float64)))
        return sparse.hstack(xu).T.tocsr(), sparse.hstack(xv).T.tocsr()

    def _fit(self, train, data, progress):
        c = self.config
        rng = np.random.default_rng(c.seed)
        fit_part, valid = random_split(train, c.valid_fraction, c.seed) if c.valid_fraction > 0 else (train, None)
        base = self.baseline_
        if valid is not None:  # the residuals of the fit part use a baseline fitted on it alone
            from .baselines import BiasedBaseline
            base = BiasedBaseline().fit_biases(fit_part)
        x, y = self._inputs(fit_part, data)
        users_side = _MDASide(x, c.corruption, c.lam, c.factors)
        items_side = _MDASide(y, c.corruption, c.lam, c.factors)
        obs = fit_part.mask_csr().astype(np.float64)
        res_vals = fit_part.rating - base.baseline_pairs(fit_part.user, fit_part.item)
        res = sparse.csr_matrix((res_vals, (fit_part.user, fit_part.item)), shape=fit_part.shape)
        obs_t, res_t = obs.T.tocsr(), res.T.tocsr()
        k = c.factors
        u = rng.normal(0, 0.1, (fit_part.n_users, k))
        v = rng.normal(0, 0.1, (fit_part.n_items, k))
        eye = np.eye(k)
        best = (math.inf, 0, None)
        for it in range(1, c.iterations + 1):
            t_u = users_side.step(u)  # (k, N) = lam P1^T W1 X_b
            u = _als_rows(t_u.T, c.lam * users_side.ptp() + c.beta * eye, obs, res, v, c.alpha)
            t_v = items_side.step(v)
            v = _als_rows(t_v.T, c.lam * items_side.ptp() + c.beta * eye, obs_t, res_t, u, c.alpha)
            pred = base.baseline_pairs(fit_part.user, fit_part.item) + np.einsum(
                "nk,nk->n", u[fit_part.user], v[fit_part.item])
            row = {"epoch": it, "train_rmse": float(np.sqrt(np.mean(np.square(pred - fit_part.rating))))}
            if valid is not None:
                vp = np.clip(base.baseline_pairs(valid.user, valid.item)
                             + np.einsum("nk,nk->n", u[valid.user], v[valid.item]), *self.rating_range_)
                row["valid_rmse"] = float(np.sqrt(np.mean(np.square(vp - valid.rating))))
                if row["valid_rmse"] < best[0] - 1e-6:
                    best = (row["valid_rmse"], it, None)
            self.history_.append(row)
            if progress:
                progress(dict(row, epochs=c.iterations))
            if self._stopping():  # (the refit below is closed-form and runs even then)
                break
        self.best_epoch_ = best[1] or len(self.history_)
        if valid is not None:
            # refit on all training ratings for the chosen number of iterations (closed form: cheap)
            full = MDACF(dataclasses.replace(c, valid_fraction=0.0, iterations=self.best_epoch_)).fit(train, data)
            self.u_, self.v_ = full.u_, full.v_
            self.p_user_, self.p_item_ = full.p_user_, full.p_item_
            return
        self.u_, self.v_ = u, v
        self.p_user_, self.p_item_ = users_side.p_mat, items_side.p_mat

    def _predict_raw(self, users, items):
        return self.baseline_.baseline_pairs(users, items) + np.einsum("nk,nk->n", self.u_[users], self.v_[items])

    def _score_raw(self, users):
        return self.baseline_.baseline_rows(users) + self.u_[users] @ self.v_.T

    def item_embeddings(self):
        return self.v_.astype(np.float32), "mDA-CF item factors V (coupled to the items' mDA codes, k = %d)" % (
            self.v_.shape[1])

    fold_in_how = ("mDA-CF: your bias and your factor vector u are solved from your ratings by the same "
                   "least-squares step as in training, with the item factors V fixed (no mDA term: a new user "
                   "has no profile here).")

    def _fold_in_raw(self, items, ratings) -> np.ndarray:
        """A new user's factors by the same per-row solve as training, without the mDA term
        (a new user has no side information here): ridge on V for the residuals."""
        b = self.baseline_
        bu = float(np.sum(np.asarray(ratings) - b.mu_ - b.bi_[items]) / (b.config.reg_user + len(items)))
        res = np.asarray(ratings, np.float64) - b.mu_ - bu - b.bi_[items]
        vv = self.v_[items]
        c = self.config
        u = np.linalg.solve(c.alpha * vv.T @ vv + c.beta * np.eye(vv.shape[1]), c.alpha * vv.T @ res)
        return b.mu_ + bu + b.bi_ + self.v_ @ u
