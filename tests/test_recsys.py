"""Tests for aecore.recsys: masked loss, models on synthetic low-rank ratings, loaders (files the
test writes, a local download, the real ML-100K when $AECORE_DATA is set), metrics, CLI."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse

from localhttp import serving
from aecore.cli import main
from aecore.data import DataError
from aecore.recsys import data as rdata
import aecore.recsys.evaluate
from aecore.recsys import make, recall_ndcg_at_k
from aecore.recsys.data import Ratings, RatingsData, load_movielens, load_ratings_csv, random_split
from aecore.recsys.evaluate import mae, rmse, topk_indices

evaluate = aecore.recsys.evaluate  # the module (the package's attribute of that name is the module too)
from aecore.recsys.models import AutoRecNet, _MDASide, autorec_loss, mda_statistics



# ----------------------------------------------------------------------------- helpers
def low_rank_data(n_users=300, n_items=120, rank=3, observed=0.25, test=0.2, seed=0, side=False) -> RatingsData:
    """Ratings 1..5 from a rank-`rank` matrix; `observed` of the entries known, `test` of those hidden."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, rank))
    v = rng.normal(size=(n_items, rank))
    full = u @ v.T
    full = 3 + 1.5 * full / full.std() + rng.normal(0, 0.5, size=(n_items,))[None, :]  # item effects too
    full = np.clip(full, 1, 5)
    mask = rng.random(full.shape) < observed
    uu, ii = np.nonzero(mask)
    ratings = Ratings(uu.astype(np.int64), ii.astype(np.int64), full[uu, ii].astype(np.float32), n_users, n_items)
    train, held = random_split(ratings, test, seed)
    extra = {}
    if side:
        extra = dict(item_genres=(v > 0).astype(np.uint8), genre_names=tuple(f"g{k}" for k in range(rank)),
                     user_features=(u > 0).astype(np.float32), user_feature_names=tuple(f"f{k}" for k in range(rank)))
    return RatingsData(name="synthetic", split="random", train=train, test=held, user_ids=np.arange(n_users),
                       item_ids=np.arange(n_items), rating_range=(1.0, 5.0), **extra)


def item_mean_rmse(data: RatingsData) -> float:
    tr = data.train
    sums = np.bincount(tr.item, tr.rating, tr.n_items)
    counts = np.bincount(tr.item, minlength=tr.n_items)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), tr.rating.mean())
    return rmse(means[data.test.item], data.test.rating)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- masked loss
def test_unobserved_entries_get_exactly_zero_gradient():
    torch.manual_seed(0)
    net = AutoRecNet(6, 4)
    x = torch.tensor([[5.0, 0, 3, 0, 1, 0], [0, 0, 4, 2, 0, 0], [1.0, 0, 0, 5, 0, 0]])
    mask = (x != 0).float()  # column 1 and 5 never observed; column 4 only in row 0
    recon = net(x)
    recon.retain_grad()
    from aecore.objectives import squared_error

    squared_error(recon, x, mask).backward()
    assert torch.all(recon.grad[mask == 0] == 0)  # exactly zero, not small
    assert torch.all(recon.grad[mask == 1] != 0)
    # an output never observed: its decoder row and bias get no gradient
    for j in (1, 5):
        assert torch.all(net.decoder.weight.grad[j] == 0) and net.decoder.bias.grad[j] == 0
        # its input is 0 wherever it is unknown, so the encoder column gets none either
        assert torch.all(net.encoder.weight.grad[:, j] == 0)
    assert torch.any(net.decoder.weight.grad[4] != 0)

    # with weight decay the unobserved rows get exactly the decay's gradient, reg/n * W
    net.zero_grad()
    terms = autorec_loss(net, x, mask, reg=2.0, n_rows=3)
    assert set(terms) == {"recon", "l2"}
    sum(terms.values()).backward()
    torch.testing.assert_close(net.decoder.weight.grad[1], 2.0 / 3 * net.decoder.weight[1].detach())


def test_autorec_loss_is_the_papers_objective_divided_by_rows():
    torch.manual_seed(1)
    net = AutoRecNet(5, 3)
    x = torch.tensor([[1.0, 0, 2, 0, 0], [0, 3, 0, 0, 4]])
    m = (x != 0).float()
    t = autorec_loss(net, x, m, reg=10.0, n_rows=2)
    with torch.no_grad():
        r = net(x)
        sse = ((r - x) ** 2 * m).sum()
        l2 = 10.0 / 2 * (net.encoder.weight.square().sum() + net.decoder.weight.square().sum())
    torch.testing.assert_close(t["recon"] + t["l2"], (sse + l2) / 2)


def test_sparse_training_loss_equals_the_dense_masked_one_with_its_gradients():
    # the Rprop path never densifies: same terms, same values, same gradients as autorec_loss
    from aecore.recsys.models import _SparseRows, autorec_loss_sparse

    rng = np.random.default_rng(0)
    x = sparse.random(9, 13, density=0.3, random_state=1, format="csr", dtype=np.float32)
    x.data = rng.integers(1, 6, x.nnz).astype(np.float32)
    x.data[0] = 0.0  # a rating of 0 is still observed (an explicit entry)
    torch.manual_seed(0)
    net = AutoRecNet(13, 4)
    xd = torch.from_numpy(x.toarray())
    pattern = sparse.csr_matrix((np.ones(x.nnz, np.float32), x.indices, x.indptr), shape=x.shape)
    mask = torch.from_numpy(pattern.toarray())  # 1 on every stored entry, the 0 rating included
    dense = autorec_loss(net, xd, mask, reg=3.0, n_rows=9)
    sum(dense.values()).backward()
    want = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    got = autorec_loss_sparse(net, _SparseRows(x, "cpu"), reg=3.0, n_rows=9)
    sum(got.values()).backward()
    assert set(got) == set(dense) == {"recon", "l2"}
    for k in dense:
        torch.testing.assert_close(got[k], dense[k])
    for p, g in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6)
    never = np.flatnonzero(mask.sum(0).numpy() == 0)  # columns nobody rated: no gradient but decay
    assert len(never) and torch.all(net.decoder.bias.grad[never] == 0)


def test_input_dropout_corrupts_the_input_but_the_loss_keeps_every_rating():
    from aecore.recsys.models import _SparseRows, autorec_loss_sparse

    x = sparse.random(8, 10, density=0.4, random_state=2, format="csr", dtype=np.float32)
    x.data = np.random.default_rng(1).integers(1, 6, x.nnz).astype(np.float32)
    torch.manual_seed(0)
    net = AutoRecNet(10, 3)
    torch.manual_seed(7)
    got = autorec_loss_sparse(net, _SparseRows(x, "cpu"), reg=0.0, n_rows=8, dropout=0.4)["recon"]
    torch.manual_seed(7)
    keep = (torch.rand(x.nnz) >= 0.4).numpy()  # the same draw, in the stored order
    assert 0 < keep.sum() < x.nnz
    corrupted = sparse.csr_matrix((x.data * keep / 0.6, x.indices, x.indptr), shape=x.shape).toarray()
    with torch.no_grad():
        recon = net(torch.from_numpy(corrupted).float())
        want = (((recon - torch.from_numpy(x.toarray())) * torch.from_numpy((x != 0).toarray())) ** 2).sum() / 8
    torch.testing.assert_close(got.detach(), want)
    clean = autorec_loss_sparse(net, _SparseRows(x, "cpu"), reg=0.0, n_rows=8)["recon"]
    assert not torch.isclose(got, clean)  # the corruption changed the input


# ----------------------------------------------------------------------------- models on synthetic data
@pytest.mark.parametrize("name", ["autorec-item", "autorec-user"])
def test_autorec_recovers_hidden_low_rank_entries(name):
    data = low_rank_data(n_users=400, n_items=400, observed=0.2)
    model = make(name, hidden=40, reg=1.0, epochs=100, optimizer="rprop", lr=1e-2, patience=10, threads=1)
    model.fit(data.train, data)
    got = evaluate.rating_metrics(model, data.test)["rmse"]
    base = item_mean_rmse(data)
    assert got < 0.5 * base, (got, base)  # ~0.4 vs ~1.17
    assert model.best_epoch_ >= 1 and model.history_ and "valid_rmse" in model.history_[0]


def test_autorec_ensemble_is_the_average_of_its_members():
    # n networks from seeds seed..seed+n-1; their mean is what the ensemble predicts, scores and folds in
    data = low_rank_data(n_users=60, n_items=40, observed=0.3)
    common = dict(hidden=6, reg=1.0, epochs=15, lr=1e-2, valid_fraction=0.0, threads=1)
    for name in ("autorec-item", "autorec-user"):
        ens = make(name, ensemble=3, seed=4, **common).fit(data.train, data)
        members = [make(name, seed=4 + k, ensemble=1, **common).fit(data.train, data) for k in range(3)]
        u, i = data.test.user, data.test.item
        np.testing.assert_allclose(ens._predict_raw(u, i), np.mean([m._predict_raw(u, i) for m in members], axis=0),
                                   rtol=1e-4, atol=1e-4)
        users = np.arange(5)
        np.testing.assert_allclose(ens._score_raw(users), np.mean([m._score_raw(users) for m in members], axis=0),
                                   rtol=1e-4, atol=1e-4)
        assert ens.codes_.shape[1] == 3 * 6
        assert len({round(float(m._predict_raw(u[:1], i[:1])[0]), 6) for m in members}) == 3  # seeds differ
    row = data.train.csr()[0]
    u_ens = make("autorec-user", ensemble=2, **common).fit(data.train, data)
    u_one = [make("autorec-user", seed=k, ensemble=1, **common).fit(data.train, data) for k in range(2)]
    np.testing.assert_allclose(u_ens.fold_in(row.indices, row.data),
                               np.clip(np.mean([np.asarray(m._score_raw(np.array([0])))[0] for m in u_one], axis=0),
                                       1, 5), rtol=1e-4, atol=1e-4)


def test_autorec_ensemble_members_each_choose_their_epochs_then_refit():
    data = low_rank_data(n_users=80, n_items=50, observed=0.3)
    common = dict(hidden=8, reg=1.0, epochs=40, lr=1e-2, patience=5, threads=1)
    m = make("autorec-item", ensemble=2, seed=3, **common).fit(data.train, data)
    singles = [make("autorec-item", ensemble=1, seed=s, **common).fit(data.train, data) for s in (3, 4)]
    assert m.best_epochs_ == [s.best_epoch_ for s in singles]  # each on its own split (seeded by its seed)
    u, i = data.test.user, data.test.item
    np.testing.assert_allclose(m._predict_raw(u, i), np.mean([s._predict_raw(u, i) for s in singles], axis=0),
                               rtol=1e-4, atol=1e-4)
    for log, tag, best in ((m.history_, "1/2", m.best_epochs_[0]), (m.member_histories_[0], "2/2", m.best_epochs_[1])):
        select = [r for r in log if r["phase"] == f"select {tag}"]
        assert select and all("valid_rmse" in r for r in select)
        assert best == min(select, key=lambda r: r["valid_rmse"])["epoch"]  # the best validation epoch
        assert [r["phase"] for r in log].count(f"refit {tag}") == best  # refit for exactly that many epochs
    assert all(r["phase"].endswith("1/2") for r in m.history_)  # one validation curve for the page
    assert 0 < m.train_seconds_ <= m.fit_seconds_ and m.train_cpu_seconds_ > 0


def low_rank_bias_data(n_users=300, n_items=200, observed=0.25, seed=1) -> RatingsData:
    """Ratings 1..5 = clip(3 + b_u + b_i + rank-3 interactions + noise); 20 % of them hidden."""
    rng = np.random.default_rng(seed)
    inter = rng.normal(size=(n_users, 3)) @ rng.normal(size=(3, n_items))
    full = 3 + rng.normal(0, 0.6, (n_users, 1)) + rng.normal(0, 0.6, (1, n_items)) + 0.8 * inter / inter.std()
    full = np.clip(full + rng.normal(0, 0.1, full.shape), 1, 5)
    uu, ii = np.nonzero(rng.random(full.shape) < observed)
    r = Ratings(uu.astype(np.int64), ii.astype(np.int64), full[uu, ii].astype(np.float32), n_users, n_items)
    train, held = random_split(r, 0.2, seed)
    return RatingsData("synthetic", "random", train, held, np.arange(n_users), np.arange(n_items), (1.0, 5.0))


@pytest.mark.parametrize("name", ["autorec-item", "autorec-user"])
def test_residual_autorec_recovers_hidden_entries_and_predicts_baseline_plus_network(name):
    data = low_rank_bias_data()
    common = dict(hidden=30, reg=1.0, epochs=80, lr=1e-2, patience=10, threads=1, ensemble=1)
    res = make(name, residual=True, **common).fit(data.train, data)
    u, i = data.test.user, data.test.item
    got = evaluate.rating_metrics(res, data.test)["rmse"]
    assert got < 0.5 * item_mean_rmse(data), (got, item_mean_rmse(data))  # item ~0.32, user ~0.41 vs ~0.93
    plain = make(name, residual=False, **common).fit(data.train, data)
    assert got < evaluate.rating_metrics(plain, data.test)["rmse"] - 0.05  # plain ~0.44 / ~0.56: biases cost it
    # the network's output is the residual: prediction = mu + b_u + b_i (fitted on all of train) + r_hat
    net_out = np.einsum("nk,nk->n", *((res.codes_[i], res.dec_w_[u]) if name == "autorec-item" else
                                      (res.codes_[u], res.dec_w_[i]))) + res.dec_b_[u if name == "autorec-item" else i]
    base = res.baseline_.baseline_pairs(u, i)
    np.testing.assert_allclose(res._predict_raw(u, i), base + net_out, rtol=1e-5, atol=1e-5)
    assert abs(float(np.mean(net_out))) < 0.2  # it learned residuals (mean ~0), not ratings (mean ~3)
    everything = res.predict(np.repeat(np.arange(data.train.n_users), data.train.n_items),
                             np.tile(np.arange(data.train.n_items), data.train.n_users))
    raw = res._predict_raw(np.repeat(np.arange(data.train.n_users), data.train.n_items),
                           np.tile(np.arange(data.train.n_items), data.train.n_users))
    assert np.all(np.isfinite(everything)) and ((raw < 1) | (raw > 5)).any()  # clipping has work to do
    np.testing.assert_allclose(everything, np.clip(raw, 1, 5), rtol=1e-6, atol=1e-6)
    s = res.score_users(np.arange(5))
    np.testing.assert_allclose(s, np.clip(res._score_raw(np.arange(5)), 1, 5), rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(s)) and s.min() >= 1 and s.max() <= 5
    # fold-in of a known user: its b_u is the baseline's, so it reproduces (U-AutoRec) / is close to its scores
    user = int(data.train.user[0])
    row = data.train.csr()[user]
    folded = res.fold_in(row.indices, row.data)
    assert folded.shape == (data.train.n_items,) and np.all(np.isfinite(folded))
    assert folded.min() >= 1 and folded.max() <= 5
    if name == "autorec-user":
        np.testing.assert_allclose(folded, res.score_users(np.array([user]))[0], rtol=1e-4, atol=1e-4)


def test_residual_autorec_unseen_users_and_items_get_the_baseline():
    data = low_rank_bias_data(n_users=80, n_items=50)
    tr = data.train
    train = tr.subset((tr.item != 7) & (tr.user != 5))
    m = make("autorec-item", hidden=8, epochs=5, threads=1, residual=True).fit(train, data)
    users, items = np.array([5, 0, 5, 1]), np.array([1, 7, 7, 2])
    pred = m.predict(users, items)
    np.testing.assert_allclose(pred[:3], np.clip(m.baseline_.baseline_pairs(users[:3], items[:3]), 1, 5), rtol=1e-5)
    assert np.all(np.isfinite(pred)) and pred.min() >= 1 and pred.max() <= 5
    from aecore.recsys.base import ConfigError

    with pytest.raises(ConfigError, match="residual='yes' must be true or false"):
        make("autorec-item", residual="yes")
    assert make("autorec-item").config.residual and not make("autorec-user").config.residual  # the defaults


def test_autorec_validation_never_sees_the_validation_ratings(monkeypatch):
    """While AutoRec chooses its epochs, a validation pair whose item the fit part lacks gets the
    biased baseline of the fit part alone: one fitted on all training ratings would contain the
    very rating being scored (here every validation pair is such a pair, so the validation RMSE
    is that baseline's, at every epoch)."""
    from aecore.recsys import models
    from aecore.recsys.baselines import BiasedBaseline

    data = low_rank_bias_data(n_users=80, n_items=50)
    cold = data.train.item < 5
    fit_part, valid = data.train.subset(~cold), data.train.subset(cold)
    monkeypatch.setattr(models, "random_split", lambda ratings, fraction, seed: (fit_part, valid))

    def rmse(base):
        pred = np.clip(base.baseline_pairs(valid.user, valid.item), 1, 5)
        return float(np.sqrt(np.mean(np.square(pred - valid.rating))))

    honest, leaky = rmse(BiasedBaseline().fit_biases(fit_part)), rmse(BiasedBaseline().fit_biases(data.train))
    assert leaky < honest - 0.05  # the leak would flatter the validation score
    for residual in (False, True):
        m = make("autorec-item", hidden=8, epochs=4, patience=10, threads=1, residual=residual).fit(data.train, data)
        select = [r["valid_rmse"] for r in m.history_ if r["phase"].startswith("select")]
        assert select == pytest.approx([honest] * 4, rel=1e-6)


def test_residual_autorec_without_refit_predicts_with_the_offset_it_learned_from():
    """refit=False keeps each selection network, which learned r - (mu + b_u + b_i) of its fit
    part: the prediction adds that baseline back (the mean of them for an ensemble)."""
    from aecore.recsys.baselines import BiasedBaseline

    data = low_rank_bias_data(n_users=80, n_items=50)
    common = dict(hidden=8, epochs=15, patience=20, lr=1e-2, threads=1, residual=True, refit=False)
    m = make("autorec-item", ensemble=1, seed=3, **common).fit(data.train, data)
    fit_part, _ = random_split(data.train, m.config.valid_fraction, 3)
    u, i = data.test.user, data.test.item
    net_out = np.einsum("nk,nk->n", m.codes_[i], m.dec_w_[u]) + m.dec_b_[u]
    np.testing.assert_allclose(m._predict_raw(u, i), BiasedBaseline().fit_biases(fit_part).baseline_pairs(u, i)
                               + net_out, rtol=1e-5, atol=1e-5)
    assert not np.allclose(BiasedBaseline().fit_biases(fit_part).baseline_pairs(u, i),
                           m.baseline_.baseline_pairs(u, i), atol=1e-3)  # all of train's baseline differs
    ens = make("autorec-item", ensemble=2, seed=3, **common).fit(data.train, data)
    other = make("autorec-item", ensemble=1, seed=4, **common).fit(data.train, data)
    np.testing.assert_allclose(ens._predict_raw(u, i), (m._predict_raw(u, i) + other._predict_raw(u, i)) / 2,
                               rtol=1e-4, atol=1e-4)


def test_residual_target_must_have_the_inputs_pattern():
    from aecore.recsys.models import _SparseRows

    x = sparse.random(6, 5, density=0.5, format="csr", random_state=0, dtype=np.float32)
    x.data += 1
    t = x.copy()
    t.data -= 3
    rows = _SparseRows(x, "cpu", t)
    assert torch.equal(rows.val, torch.from_numpy(x.data)) and torch.allclose(rows.target, rows.val - 3)
    other = sparse.random(6, 5, density=0.5, format="csr", random_state=1, dtype=np.float32)
    with pytest.raises(ValueError, match="target's observed entries differ"):
        _SparseRows(x, "cpu", other)


def test_selection_sees_only_the_training_ratings(monkeypatch):
    from aecore.recsys import selection

    data = low_rank_data(n_users=70, n_items=40, observed=0.3)
    seen = []
    real_make = selection.make

    def spy(name, **params):
        model = real_make(name, **params)
        fit = model.fit

        def recording_fit(train, side=None, progress=None):
            seen.append((train, side))
            return fit(train, side, progress)
        model.fit = recording_fit
        return model

    monkeypatch.setattr(selection, "make", spy)
    grid = [{"factors": 2}, {"factors": 4}, {"factors": 4, "beta": 1e4}]
    rows, best = selection.select("mdacf", grid, data.train, data, fraction=0.2, fixed={"iterations": 3})
    assert [r["params"] for r in rows] == grid
    assert best == int(np.argmin([r["valid_rmse"] for r in rows])) and best != 2  # huge beta: factors ~ 0
    for train, side in seen:
        assert len(side.test) == 0  # the test ratings are gone before a model sees the data
        assert len(train) == rows[0]["n_fit"] and rows[0]["n_fit"] + rows[0]["n_valid"] == len(data.train)
        fit_pairs = set(zip(train.user.tolist(), train.item.tolist()))
        assert fit_pairs < set(zip(data.train.user.tolist(), data.train.item.tolist()))
    fit, valid = selection.validation_split(data.train, 0.2)
    assert not set(zip(fit.user.tolist(), fit.item.tolist())) & set(zip(valid.user.tolist(), valid.item.tolist()))
    with pytest.raises(ValueError, match="grid is empty"):
        selection.select("mdacf", [], data.train, data)


def test_cdae_and_mdacf_on_synthetic_data():
    data = low_rank_data(side=True)
    cdae = make("cdae", hidden=16, epochs=15, lr=1e-2, patience=5, threads=1).fit(data.train, data)
    m = evaluate.evaluate(cdae, data)
    assert math.isnan(m["rmse"])  # a ranking model: no ratings
    pop = make("popularity").fit(data.train, data)
    assert m["recall@10"] > evaluate.evaluate(pop, data)["recall@10"]
    mdacf = make("mdacf", factors=5, iterations=8).fit(data.train, data)
    got = evaluate.rating_metrics(mdacf, data.test)["rmse"]
    assert got < 0.8 * item_mean_rmse(data)


def test_mda_expected_statistics_match_sampled_corruption():
    rng = np.random.default_rng(0)
    x = sparse.csr_matrix(rng.integers(0, 3, size=(4, 30)).astype(float))
    x_b = sparse.vstack([x, np.ones((1, 30))]).tocsr()
    p = 0.4
    s, eq, ep = mda_statistics(x_b, p)
    xd = x_b.toarray()
    acc_q, acc_p, n = np.zeros_like(eq), np.zeros_like(ep), 20000
    for _ in range(n):
        keep = np.ones(5)
        keep[:4] = rng.random(4) > p
        xt = xd * keep[:, None]  # one corruption per feature, shared over examples (any scheme averages the same)
        acc_q += xt @ xt.T
        acc_p += xd[:4] @ xt.T
    np.testing.assert_allclose(s, xd @ xd.T)
    np.testing.assert_allclose(acc_q / n, eq, rtol=0.03, atol=0.3)
    np.testing.assert_allclose(acc_p / n, ep, rtol=0.03, atol=0.3)


def test_mda_side_step_matches_explicit_w():
    rng = np.random.default_rng(1)
    x = sparse.random(6, 25, density=0.4, random_state=2, format="csr")
    lam, k = 0.7, 3
    side = _MDASide(x, 0.3, lam, k)
    side.p_mat = rng.normal(size=(6, k))
    u = rng.normal(size=(25, k))
    p_old = side.p_mat.copy()
    out = side.step(u)
    # the same with W formed explicitly
    s, eq, ep = mda_statistics(side.x_b, 0.3)
    a = eq + lam * s
    a[np.diag_indices_from(a)] += 1e-5 * max(1.0, float(np.mean(np.diag(a))))
    xb = side.x_b.toarray()
    w = (ep + lam * p_old @ (xb @ u).T) @ np.linalg.inv(a)
    p_new = (w @ xb @ u) @ np.linalg.inv(u.T @ u)
    np.testing.assert_allclose(side.p_mat, p_new, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(out, lam * p_new.T @ w @ xb, rtol=1e-6, atol=1e-8)


def test_unseen_users_and_items_get_the_baseline_never_nan():
    data = low_rank_data(n_users=60, n_items=30)
    tr = data.train
    keep = (tr.item != 7) & (tr.user != 5)  # item 7 and user 5 unseen in training
    train = tr.subset(keep)
    d = dataclasses.replace(data, train=train)
    for name in ("autorec-item", "autorec-user", "mdacf", "biased-mf"):
        params = {"epochs": 3, "threads": 1, "hidden": 8} if name.startswith("autorec") else {}
        if name == "mdacf":
            params = {"factors": 3, "iterations": 2}
        m = make(name, **params).fit(train, d)
        users, items = np.array([5, 0, 5]), np.array([1, 7, 7])
        pred = m.predict(users, items)
        assert np.all(np.isfinite(pred)) and np.all((pred >= 1) & (pred <= 5))
        np.testing.assert_allclose(pred, np.clip(m.baseline_.baseline_pairs(users, items), 1, 5), rtol=1e-5)
        s = m.score_users(np.array([0, 5]))
        np.testing.assert_allclose(s[:, 7], np.clip(m.baseline_.baseline_rows(np.array([0, 5]))[:, 7], 1, 5),
                                   rtol=1e-5)
        assert np.all(np.isfinite(s)) and s.min() >= 1 and s.max() <= 5


def test_fold_in_of_a_known_user_matches_u_autorec_scores():
    data = low_rank_data(n_users=80, n_items=40)
    m = make("autorec-user", hidden=8, epochs=3, threads=1).fit(data.train, data)
    u = int(data.train.user[0])
    row = data.train.csr()[u]
    np.testing.assert_allclose(m.fold_in(row.indices, row.data), m.score_users(np.array([u]))[0], rtol=1e-4,
                               atol=1e-4)
    mi = make("autorec-item", hidden=8, epochs=3, threads=1).fit(data.train, data)
    s = mi.fold_in([0, 1, 2], [5.0, 5.0, 1.0])
    assert s.shape == (40,) and np.all(np.isfinite(s))


@pytest.mark.parametrize("name", ["autorec-item", "autorec-user", "cdae"])
def test_training_never_builds_a_dense_users_by_items_matrix(name):
    # 30k users x 4k items: 0.48 GB as a dense float32 matrix (numpy's and scipy's allocations are
    # traced; torch's are not); the models densify one batch of rows at a time instead
    rng = np.random.default_rng(0)
    n_u, n_i, n = 30_000, 4_000, 8_000
    r = Ratings(rng.integers(0, n_u, n), rng.integers(0, n_i, n), rng.integers(1, 6, n).astype(np.float32), n_u, n_i)
    r = r.subset(np.unique(r.user * n_i + r.item, return_index=True)[1])
    train, test = random_split(r, 0.1, 0)
    d = RatingsData("big", "random", train, test, np.arange(n_u), np.arange(n_i), (1.0, 5.0))
    tracemalloc.start()
    m = make(name, hidden=8, epochs=1, batch_size=64, threads=1, valid_fraction=0.0).fit(train, d)
    out = evaluate.evaluate(m, d)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.isfinite(out["ndcg@10"])
    assert peak < 150e6, f"peak {peak / 1e6:.0f} MB"


# ----------------------------------------------------------------------------- metrics
def test_rmse_mae_by_hand():
    assert rmse([3, 4, 5], [4, 4, 3]) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae([3, 4, 5], [4, 4, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        rmse([1, 2], [1])


def test_recall_and_ndcg_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5],
                       [0.1, 0.2, 0.3, 0.4, 0.5],
                       [0.5, 0.4, 0.3, 0.2, 0.1]])
    relevant = sparse.csr_matrix(np.array([[0, 0, 1, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]))
    exclude = sparse.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    rec, ndcg, has = recall_ndcg_at_k(scores, relevant, exclude, k=2)
    # user 0: item 0 excluded -> top-2 = [1, 2]; relevant {2, 4}: one hit at rank 2
    assert rec[0] == pytest.approx(0.5)
    assert ndcg[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))  # 0.3869
    # user 1: top-2 = [4, 3], the only relevant item first
    assert rec[1] == 1.0 and ndcg[1] == pytest.approx(1.0)
    # user 2: nothing relevant -> not counted
    assert not has[2] and math.isnan(rec[2]) and list(has[:2]) == [True, True]
    # k larger than the relevant set: IDCG uses min(k, |relevant|)
    rec, ndcg, _ = recall_ndcg_at_k(scores[1:2], relevant[1:2], None, k=3)
    assert rec[0] == 1.0 and ndcg[0] == pytest.approx(1.0)


def test_topk_ties_go_to_the_lower_index_and_exclusions_last():
    s = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert topk_indices(s, 2).tolist() == [[1, 2]]
    assert topk_indices(s, 3, sparse.csr_matrix(np.array([[0, 1, 0, 0, 0]]))).tolist() == [[2, 3, 0]]


def test_topn_metrics_of_a_perfect_oracle():
    data = low_rank_data(n_users=50, n_items=30)

    class Oracle:
        name, predicts_ratings = "oracle", False

        def score_users(self, users, clip=True):
            return np.asarray(data.test.csr()[users].todense())

    m = evaluate.topn_metrics(Oracle(), data.train, data.test, k=10)
    assert m["ndcg@10"] == pytest.approx(1.0) and m["recall@10"] <= 1.0


# ----------------------------------------------------------------------------- ratings CSV
def test_csv_with_header_string_ids_half_stars(tmp_path):
    p = tmp_path / "r.csv"
    rows = ["userId,movieId,rating,timestamp"] + [f"u{u},m{i},{(u + i) % 9 / 2 + 0.5},100" for u in range(10)
                                                   for i in range(8)]
    p.write_text("\n".join(rows) + "\n")
    d = load_ratings_csv(p, seed=3)
    assert d.skipped == {}
    assert (d.n_users, d.n_items) == (10, 8) and len(d.train) + len(d.test) == 80 and len(d.test) == 8
    assert d.user_ids[0] == "u0" and d.rating_range == (0.5, 4.5)
    assert set(np.unique(np.concatenate([d.train.rating, d.test.rating]))) <= {x / 2 for x in range(1, 10)}
    again = load_ratings_csv(p, seed=3)
    np.testing.assert_array_equal(again.test.user, d.test.user)  # the split is seeded


def test_csv_without_header_counts_bad_rows(tmp_path):
    p = tmp_path / "bad.tsv"
    good = [f"{u}\t{i}\t{1 + (u * i) % 5}" for u in range(1, 6) for i in range(1, 5)]
    bad = ["7\t3", "7\t3\t4\t5\t6", "\t3\t4", "8\t3\tfive", "8\t4\tnan", "9\t1\t3\tyesterday", "1\t1\t2"]
    p.write_text("\n".join(good[:5] + bad + good[5:]) + "\n\n")
    d = load_ratings_csv(p)
    assert d.skipped == {"bad_rating": 2, "bad_timestamp": 1, "duplicate": 1, "empty_id": 1,
                         "wrong_field_count": 2}
    assert len(d.train) + len(d.test) == 20
    assert d.user_ids.tolist() == [1, 2, 3, 4, 5]  # integer ids sort as numbers


def test_csv_without_usable_rows_is_refused(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("user,item,rating\nalice,x,good\nbob,,4\n")
    with pytest.raises(DataError, match=r"empty\.csv.*no usable rows.*1 bad_rating.*1 empty_id"):
        load_ratings_csv(p)
    p.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv.*no usable rows"):
        load_ratings_csv(p)
    with pytest.raises(DataError, match=r"nope\.csv.*no such file"):
        load_ratings_csv(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- MovieLens files (tiny, written here)
TINY = dict(n_users=4, n_items=5, n_ratings=10)


def tiny_ml_files() -> dict[str, bytes]:
    users = "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|32067\n4|60|F|none|11111\n"
    items = "".join(f"{i}|Movie {i} (199{i})|01-Jan-1995||http://x|" + "|".join(
        "1" if g == i else "0" for g in range(19)) + "\n" for i in range(1, 6))
    ratings = [(1, 1, 5), (1, 2, 3), (2, 1, 4), (2, 3, 2), (3, 4, 5), (3, 5, 1), (4, 2, 4), (4, 3, 3), (1, 5, 2),
               (2, 4, 4)]
    line = lambda rs: "".join(f"{u}\t{i}\t{r}\t88125{u}{i}\n" for u, i, r in rs)  # noqa: E731
    return {"u.user": users.encode(), "u.item": items.encode("latin-1"), "u.data": line(ratings).encode(),
            "u1.base": line(ratings[:8]).encode(), "u1.test": line(ratings[8:]).encode()}


@pytest.fixture
def tiny_ml(monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AECORE_DATA", raising=False)
    spec = dataclasses.replace(rdata.MOVIELENS["movielens-100k"], **TINY)
    monkeypatch.setitem(rdata.MOVIELENS, "movielens-100k", spec)
    rdata.clear_memory_cache()
    yield spec
    rdata.clear_memory_cache()


def test_movielens_files_directly_under_the_data_root(tiny_ml, tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "movielens-100k").mkdir(parents=True)
    for name, blob in tiny_ml_files().items():
        (root / "movielens-100k" / name).write_bytes(blob)
    monkeypatch.setenv("AECORE_DATA", str(root))
    d = load_movielens(split="u1", download=False)
    assert (d.n_users, d.n_items, len(d.train), len(d.test)) == (4, 5, 8, 2)
    assert d.item_titles[2] == "Movie 3 (1993)" and d.genres_of(2) == ["Animation"]
    assert d.user_features.shape == (4, 7 + 2 + 21) and d.user_features.sum(axis=1).tolist() == [3] * 4
    assert d.train.csr()[0, 1] == 3 and isinstance(d.train.csr(), sparse.csr_matrix)
    r = load_movielens(split="random", download=False, test_fraction=0.2)
    assert (len(r.train), len(r.test)) == (8, 2)
    with pytest.raises(DataError, match="split='u9' is not a split of movielens-100k"):
        load_movielens(split="u9", download=False)
    with pytest.raises(DataError, match=r"u2\.base' is missing"):
        load_movielens(split="u2", download=False)


def test_movielens_offline_error_says_where_to_put_the_files(tiny_ml, tmp_path):
    with pytest.raises(DataError, match=r"not available offline.*u\.data.*AECORE_DATA.*ml-100k\.zip"):
        load_movielens(download=False)


def test_movielens_1m_format_from_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    spec = dataclasses.replace(rdata.MOVIELENS["movielens-1m"], n_users=3, n_items=4, n_ratings=6)
    monkeypatch.setitem(rdata.MOVIELENS, "movielens-1m", spec)
    rdata.clear_memory_cache()
    folder = tmp_path / "root" / "movielens-1m" / "ml-1m"  # the zip's folder below the data root
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::97830{u}\n" for u, i, r in
                                                [(1, 1, 5), (1, 3, 4), (2, 2, 3), (2, 4, 1), (3, 1, 2), (3, 2, 4)]))
    (folder / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Am\xe9lie (2001)::"
                                        "Comedy|Romance\n4::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    d = load_movielens("movielens-1m", split="random", root=tmp_path / "root", download=False, test_fraction=0.5)
    assert (d.n_users, d.n_items, len(d.train), len(d.test)) == (3, 4, 3, 3)
    assert d.item_titles[1] == "Am\xe9lie (2001)" and d.item_titles[2] == "movie 3"  # id 3 is not in movies.dat
    assert d.genres_of(3) == ["Action", "Crime", "Thriller"] and len(d.genre_names) == 18
    feats = dict(zip(d.user_feature_names, d.user_features[1]))
    assert feats["age 56+"] == 1 and feats["male"] == 1 and feats["occupation: self-employed"] == 1
    with pytest.raises(DataError, match="split='u1' is not a split of movielens-1m"):
        load_movielens("movielens-1m", split="u1", root=tmp_path / "root", download=False)
    rdata.clear_memory_cache()


def zip_of(files: dict[str, bytes], folder="ml-100k", extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in files.items():
            zf.writestr(f"{folder}/{name}", blob)
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch):
    with serving(monkeypatch) as httpd:
        yield httpd


def serve_zip(monkeypatch, server, tiny_ml, blob: bytes, published: bytes | None = None) -> str:
    published = blob if published is None else published
    archive = rdata.RemoteFile("ml-100k.zip", hashlib.sha256(published).hexdigest(), len(published))
    monkeypatch.setitem(rdata.MOVIELENS, "movielens-100k", dataclasses.replace(tiny_ml, archive=archive))
    url = server.url("/ml/")
    monkeypatch.setitem(rdata.MOVIELENS_URLS, "movielens-100k", [url])
    server.routes["/ml/ml-100k.zip"] = blob
    return url


def test_movielens_zip_is_downloaded_checked_and_extracted_into_the_cache(tiny_ml, server, monkeypatch, tmp_path):
    blob = zip_of(tiny_ml_files())
    serve_zip(monkeypatch, server, tiny_ml, blob)
    d = load_movielens(split="u1")
    cache = tmp_path / "cache" / "movielens-100k"
    assert (cache / "ml-100k.zip").read_bytes() == blob
    assert sorted(p.name for p in (cache / "ml-100k").iterdir()) == sorted(tiny_ml_files())
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k", "ml-100k.zip"]  # no temp folders left
    assert len(d.train) == 8 and d.source == str((cache / "ml-100k").resolve())
    server.routes.clear()  # offline now: found in the cache
    rdata.clear_memory_cache()
    assert len(load_movielens(split="u1", download=False).test) == 2


def test_movielens_zip_with_wrong_checksum_leaves_nothing(tiny_ml, server, monkeypatch, tmp_path):
    blob = zip_of(tiny_ml_files())
    serve_zip(monkeypatch, server, tiny_ml, blob, published=b"another zip")
    with pytest.raises(DataError, match="checksum mismatch"):
        load_movielens(split="u1")
    cache = tmp_path / "cache" / "movielens-100k"
    assert not cache.exists() or not any(cache.rglob("*"))


def test_movielens_zip_with_a_path_outside_its_folder_is_not_extracted(tiny_ml, server, monkeypatch, tmp_path):
    blob = zip_of(tiny_ml_files(), extra={"../evil.txt": b"x"})
    serve_zip(monkeypatch, server, tiny_ml, blob)
    with pytest.raises(DataError, match="unexpected member '../evil.txt'"):
        load_movielens(split="u1")
    assert not (tmp_path / "cache" / "evil.txt").exists()
    assert not (tmp_path / "cache" / "movielens-100k" / "ml-100k").exists()


def tiny_ml1m_files(ratings=None) -> dict[str, bytes]:
    ratings = ratings or "".join(f"{u}::{i}::{r}::97830{u}\n" for u, i, r in
                                 [(1, 1, 5), (1, 3, 4), (2, 2, 3), (2, 4, 1), (3, 1, 2), (3, 2, 4)])
    return {"ratings.dat": ratings.encode(),
            "movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action|Crime\n"
                          "3::Casino (1995)::Drama\n4::Babe (1995)::Comedy|Drama\n".encode("latin-1"),
            "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"}


def test_movielens_1m_zip_is_downloaded_checked_and_extracted(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AECORE_DATA", raising=False)
    blob = zip_of(tiny_ml1m_files(), folder="ml-1m")
    spec = dataclasses.replace(rdata.MOVIELENS["movielens-1m"], n_users=3, n_items=4, n_ratings=6,
                               archive=rdata.RemoteFile("ml-1m.zip", hashlib.sha256(blob).hexdigest(), len(blob)))
    monkeypatch.setitem(rdata.MOVIELENS, "movielens-1m", spec)
    monkeypatch.setitem(rdata.MOVIELENS_URLS, "movielens-1m", [server.url("/ml/")])
    rdata.clear_memory_cache()
    with pytest.raises(DataError, match=r"not available offline.*ratings\.dat.*ml-1m\.zip"):
        load_movielens("movielens-1m", split="random", download=False)
    server.routes["/ml/ml-1m.zip"] = blob
    d = load_movielens("ml-1m", split="random", test_fraction=0.5, seed=2)
    cache = tmp_path / "cache" / "movielens-1m"
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m", "ml-1m.zip"]  # no temporary folder left
    assert (cache / "ml-1m.zip").read_bytes() == blob and server.requests == ["/ml/ml-1m.zip"]
    assert (d.n_users, d.n_items, len(d.train), len(d.test)) == (3, 4, 3, 3)
    both = Ratings.concat(d.train, d.test)
    assert sorted(zip(both.user.tolist(), both.item.tolist(), both.rating.tolist())) == [
        (0, 0, 5.0), (0, 2, 4.0), (1, 1, 3.0), (1, 3, 1.0), (2, 0, 2.0), (2, 1, 4.0)]
    assert d.item_titles[1] == "Heat (1995)" and d.genres_of(1) == ["Action", "Crime"]
    server.routes.clear()  # offline now: the cache serves it
    rdata.clear_memory_cache()
    assert len(load_movielens("movielens-1m", split="random", download=False, test_fraction=0.5).train) == 3
    rdata.clear_memory_cache()


def test_movielens_1m_bad_zip_or_bad_rows_are_refused(server, monkeypatch, tmp_path):
    monkeypatch.setenv("AECORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AECORE_DATA", raising=False)
    good = zip_of(tiny_ml1m_files(), folder="ml-1m")
    spec = dataclasses.replace(rdata.MOVIELENS["movielens-1m"], n_users=3, n_items=4, n_ratings=6,
                               archive=rdata.RemoteFile("ml-1m.zip", hashlib.sha256(good).hexdigest(), len(good)))
    monkeypatch.setitem(rdata.MOVIELENS, "movielens-1m", spec)
    monkeypatch.setitem(rdata.MOVIELENS_URLS, "movielens-1m", [server.url("/ml/")])
    rdata.clear_memory_cache()
    server.routes["/ml/ml-1m.zip"] = zip_of(tiny_ml1m_files("1::1::5::1\n"), folder="ml-1m")  # not the published zip
    with pytest.raises(DataError, match="checksum mismatch"):
        load_movielens("movielens-1m", split="random")
    assert not (tmp_path / "cache" / "movielens-1m" / "ml-1m").exists()
    # the files at hand, one ratings line malformed: refused with the file and the line
    folder = tmp_path / "root" / "movielens-1m"
    folder.mkdir(parents=True)
    bad = tiny_ml1m_files("1::1::5::1\n1::3::4::2\n2;2;3;4\n2::4::1::5\n3::1::2::6\n3::2::4::7\n")
    for name, blob in bad.items():
        (folder / name).write_bytes(blob)
    with pytest.raises(DataError, match=r"ratings\.dat': line 3 is not 'user::item::rating::time'"):
        load_movielens("movielens-1m", split="random", root=tmp_path / "root", download=False)
    (folder / "ratings.dat").write_text("1::1::5::1\n")  # a truncated file
    rdata.clear_memory_cache()
    with pytest.raises(DataError, match=r"ratings\.dat': 1 ratings, expected 6"):
        load_movielens("movielens-1m", split="random", root=tmp_path / "root", download=False)
    rdata.clear_memory_cache()


# ----------------------------------------------------------------------------- the real ML-100K
def shared_ml100k() -> Path:
    root = os.environ.get("AECORE_DATA", "").strip()
    if not root:
        pytest.skip("AECORE_DATA is not set: the MovieLens 100K checks need <root>/movielens-100k/ (CI sets it)")
    folder = Path(root) / "movielens-100k"
    if not (folder / "u.data").is_file():
        pytest.skip(f"no MovieLens 100K files in {folder}")
    return Path(root)


def test_movielens_100k_from_the_data_root():
    root = shared_ml100k()
    d = load_movielens("movielens-100k", split="u1", root=root, download=False)
    assert (d.n_users, d.n_items) == (943, 1682)
    assert (len(d.train), len(d.test)) == (80000, 20000)
    both = Ratings.concat(d.train, d.test)
    assert len(both) == 100000 and both.csr().nnz == 100000  # no (user, item) twice
    assert np.bincount(both.rating.astype(int))[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert d.item_titles[0] == "Toy Story (1995)" and d.genres_of(0) == ["Animation", "Children's", "Comedy"]
    assert d.item_genres.shape == (1682, 19) and d.user_features.shape == (943, 30)
    ua = load_movielens(split="ua", root=root, download=False)
    assert (len(ua.train), len(ua.test)) == (90570, 9430)
    assert np.all(np.bincount(ua.test.user, minlength=943) == 10)
    rnd = load_movielens(split="random", root=root, download=False, seed=1)
    assert (len(rnd.train), len(rnd.test)) == (90000, 10000)


# ----------------------------------------------------------------------------- CLI
def small_csv(tmp_path, bad=False) -> Path:
    data = low_rank_data(n_users=40, n_items=25, observed=0.5, seed=4)
    both = Ratings.concat(data.train, data.test)
    lines = [f"{u},{i},{r:.1f}" for u, i, r in zip(both.user, both.item, both.rating)]
    if bad:
        lines[3:3] = ["1,2", "x,y,z"]
    p = tmp_path / "ratings.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_cli_recommend_json_contract_with_baselines(capsys, tmp_path):
    csv = small_csv(tmp_path, bad=True)
    code, out, err = run_cli(capsys, "recommend", "--ratings-csv", str(csv), "--model", "autorec-item",
                             "--hidden", "8", "--epochs", "3", "--threads", "1", "--baselines", "--json")
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    final = lines[-1]
    keys = {"model", "split", "rmse", "mae", "recall@10", "ndcg@10", "seconds"}
    assert keys <= set(final)
    assert final["model"] == "autorec-item" and final["split"] == "random"
    assert final["skipped"] == {"bad_rating": 1, "wrong_field_count": 1}
    assert "warning" in err and "skipped 2 bad row(s)" in err and "ratings.csv" in err
    for name in ("global-mean", "popularity", "biased-baseline", "biased-mf"):
        assert keys - {"model", "split"} <= set(final["baselines"][name])
    assert final["baselines"]["popularity"]["recall@10"] > 0 and final["baselines"]["popularity"]["rmse"] is None
    assert lines[0]["event"] == "epoch"
    assert final["config"]["residual"] is True  # I-AutoRec's default


def test_cli_recommend_residual_switch(capsys, tmp_path):
    csv = small_csv(tmp_path)
    code, out, err = run_cli(capsys, "recommend", "--ratings-csv", str(csv), "--model", "autorec-item",
                             "--hidden", "8", "--epochs", "2", "--ensemble", "1", "--no-residual", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["config"]["residual"] is False
    code, out, err = run_cli(capsys, "recommend", "--ratings-csv", str(csv), "--model", "cdae", "--residual")
    assert code == 2 and "--residual is not used by --model cdae" in err


@pytest.mark.parametrize("argv, match", [
    (["--dataset", "movielens-100k", "--model", "nope"], "invalid choice: 'nope'"),
    (["--dataset", "movielens-100k", "--model", "mdacf", "--hidden", "10"], "--hidden is not used by --model mdacf"),
    (["--dataset", "movielens-100k", "--model", "autorec-item", "--reg", "-1"], "reg=-1.0 must be >= 0"),
    (["--dataset", "nope-1m"], "unknown ratings dataset 'nope-1m'"),
    (["--ratings-csv", "/nonexistent/r.csv"], r"'/nonexistent/r.csv': no such file"),
    (["--dataset", "movielens-100k", "--split", "u9", "--no-download"], "split='u9' is not a split"),
])
def test_cli_recommend_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, match):
    monkeypatch.delenv("AECORE_DATA", raising=False)
    code, out, err = run_cli(capsys, "recommend", *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    import re
    assert re.search(match, err), err


def test_cli_recommend_refuses_a_csv_without_usable_rows(capsys, tmp_path):
    p = tmp_path / "junk.csv"
    p.write_text("a,b\nc\n")
    code, out, err = run_cli(capsys, "recommend", "--ratings-csv", str(p))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "junk.csv" in err and "no usable rows" in err


def test_rankings_use_unclipped_predictions_and_show_them_clipped():
    """Two items predicted above the top rating both show as 5, but the one predicted higher
    ranks first: clipping before ranking would tie them, and the tie goes to the lower index."""
    from aecore.recsys import explore
    from aecore.recsys.evaluate import topn_metrics

    data = low_rank_data(n_users=40, n_items=30, observed=0.4)
    m = make("biased-baseline").fit(data.train, data)
    user = 0
    rated = set(data.train.csr()[user].indices.tolist())
    lo, hi = sorted(i for i in range(30) if i not in rated)[:2]
    m.bi_ = m.bi_.copy()
    m.bi_[lo], m.bi_[hi] = 3.0, 4.0  # both far above 5 for every user; hi the higher
    raw = m.score_users(np.array([user]), clip=False)[0]
    assert raw[hi] > raw[lo] > 5 and m.score_users(np.array([user]))[0, [lo, hi]].tolist() == [5.0, 5.0]
    top = explore.top_n(m, data, user, k=2)
    assert [(r["item"], r["predicted rating"]) for r in top] == [(hi, 5.0), (lo, 5.0)]
    other = next(i for i in range(30) if i not in (lo, hi))
    fresh = explore.new_user(m, data, {other: 4.0}, k=2)  # a new user who rated one other item
    assert [(r["item"], r["predicted rating"]) for r in fresh["top"]] == [(hi, 5.0), (lo, 5.0)]
    assert m.fold_in([other], [4.0], clip=False)[hi] > 5 and m.fold_in([other], [4.0]).max() == 5.0
    # Recall@1 of a user whose one relevant held-out item is `hi`: found only when ranked unclipped
    test = Ratings(np.array([user]), np.array([hi]), np.array([5.0], np.float32), 40, 30)
    assert topn_metrics(m, data.train, test, k=1)["recall@1"] == 1.0


def test_popularity_offers_the_most_rated_items_and_the_global_mean_ranks_nothing():
    from aecore.recsys.evaluate import topn_metrics

    # item 2 rated by 3 users, item 0 by 2, item 1 by 1; user 0 rated item 2 already
    train = Ratings(np.array([0, 1, 2, 1, 2, 3]), np.array([2, 2, 2, 0, 0, 1]),
                    np.array([4, 5, 3, 4, 2, 5], np.float32), 4, 4)
    pop = make("popularity").fit(train)
    np.testing.assert_array_equal(pop.score_users(np.array([0, 3])), [[2, 1, 3, 0], [2, 1, 3, 0]])
    assert math.isnan(evaluate.rating_metrics(pop, train)["rmse"])  # it predicts no ratings
    test = Ratings(np.array([0, 3]), np.array([0, 2]), np.array([5, 4], np.float32), 4, 4)
    # user 0's best unrated item is 0 (2 ratings), user 3's is 2 (3 ratings): both found at k = 1
    assert topn_metrics(pop, train, test, k=1)["recall@1"] == 1.0
    assert np.argmax(pop.fold_in([1], [5.0])) == 2
    flat = topn_metrics(make("global-mean").fit(train), train, test, k=1)
    assert math.isnan(flat["recall@1"]) and math.isnan(flat["ndcg@1"]) and flat["n_users_topn"] == 2


# ----------------------------------------------------------------------------- stopping (Ctrl-C)
class StopAt:
    """A stop event that sets itself when the progress row ``when(row)`` comes (as Ctrl-C would then)."""

    def __init__(self, when):
        self.when, self.rows, self._set = when, [], False

    def __call__(self, row):
        self.rows.append(row)
        self._set = self._set or bool(self.when(row))

    def is_set(self):
        return self._set


def test_a_stop_ends_each_model_after_the_current_epoch_and_keeps_what_it_learned():
    data = low_rank_data(n_users=80, n_items=50, observed=0.3)
    for name, params in (("cdae", dict(hidden=8, epochs=50, patience=50, threads=1)),
                         ("mdacf", dict(factors=4, iterations=50)),
                         ("biased-mf", dict(factors=4, epochs=50)),
                         ("autorec-item", dict(hidden=8, epochs=50, patience=50, ensemble=1, threads=1))):
        stop = StopAt(lambda row: row["epoch"] == 3)
        model = make(name, **params).fit(data.train, data, progress=stop, stop=stop)
        assert model.stopped_ and len(stop.rows) == 3, (name, stop.rows)
        scores = model.score_users(np.arange(5))
        assert np.isfinite(scores).all(), name
        if model.predicts_ratings:
            assert np.isfinite(model.predict(data.test.user, data.test.item)).all(), name
        untouched = make(name, **{**params, ("iterations" if name == "mdacf" else "epochs"): 3}).fit(data.train, data)
        assert not untouched.stopped_
        if name == "biased-mf":  # stopped after 3 of 50 epochs = 3 epochs: the very same model
            np.testing.assert_array_equal(model.p_, untouched.p_)


def test_a_stopped_autorec_keeps_its_finished_networks_and_skips_the_rest():
    data = low_rank_data(n_users=80, n_items=50, observed=0.3)
    common = dict(hidden=8, reg=1.0, epochs=40, lr=1e-2, patience=40, threads=1, seed=3)
    # stopped while network 1 chooses its epochs: no refit, no network 2; network 1's selection net is the model
    stop = StopAt(lambda row: row["phase"] == "select 1/2" and row["epoch"] == 4)
    m = make("autorec-item", ensemble=2, **common).fit(data.train, data, progress=stop, stop=stop)
    assert m.stopped_ and [r["phase"] for r in m.history_] == ["select 1/2"] * 4 and not m.member_histories_
    assert m.codes_.shape[1] == 8 and len(m.best_epochs_) == 1
    assert m.best_epoch_ == min(m.history_, key=lambda r: r["valid_rmse"])["epoch"]
    assert np.isfinite(m.predict(data.test.user, data.test.item)).all()
    # stopped while network 2 chooses: the ensemble is network 1 alone, exactly as trained without a stop
    stop = StopAt(lambda row: row["phase"] == "select 2/2" and row["epoch"] == 2)
    m = make("autorec-item", ensemble=2, **common).fit(data.train, data, progress=stop, stop=stop)
    one = make("autorec-item", ensemble=1, **common).fit(data.train, data)
    assert m.stopped_ and m.codes_.shape[1] == 8 and m.best_epochs_ == [one.best_epoch_] and not m.member_histories_
    u, i = data.test.user, data.test.item
    np.testing.assert_allclose(m._predict_raw(u, i), one._predict_raw(u, i), rtol=1e-5, atol=1e-5)


def test_ctrl_c_stops_recommend_evaluates_the_model_so_far_and_skips_the_baselines(tmp_path):
    from interrupt import interrupt

    csv = small_csv(tmp_path)
    code, lines, err = interrupt(["recommend", "--ratings-csv", str(csv), "--model", "autorec-item", "--hidden", "8",
                                  "--epochs", "100000", "--patience", "100000", "--ensemble", "1", "--threads", "1",
                                  "--baselines", "--json"],
                                 ready=lambda line: line.get("event") == "epoch" and line["epoch"] >= 2)
    assert code == 130, err
    assert "aecore recommend: SIGINT: stopping training after the current epoch" in err and "Traceback" not in err
    last = lines[-1]
    epochs = [x for x in lines if x.get("event") == "epoch"]
    assert last["event"] == "finished" and last["stopped"] is True and 2 <= last["epochs"] < 100000
    assert epochs[-1]["epoch"] == last["epochs"] and 1 <= last["best_epoch"] <= last["epochs"]
    assert math.isfinite(last["rmse"]) and 0 <= last["recall@10"] <= 1
    assert last["baselines"] == {} and set(last["baselines_skipped"]) >= {"global-mean", "biased-mf"}
    assert set(last["baselines_skipped"].values()) == {"training was stopped"}
