"""Probe and kNN classifier vs independent references (sklearn, brute-force NumPy)."""

from __future__ import annotations

import numpy as np
import torch

from viclab.eval.probe import fit_softmax, knn_accuracy, knn_scores, linear_probe, standardize, topk_accuracy


def _blobs(n, d=8, c=4, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 3
    y = rng.integers(0, c, n)
    return (centres[y] + spread * rng.normal(size=(n, d))).astype(np.float32), y


def test_separable_data_is_classified_perfectly():
    # Classes split by a hyperplane with a margin: any decent linear probe gets 100%.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 20)).astype(np.float32)
    w = rng.normal(size=(20, 3))
    y = (x @ w).argmax(1)
    margin = np.sort(x @ w, 1)
    keep = (margin[:, -1] - margin[:, -2]) > 0.3
    x, y = x[keep], y[keep]
    r = linear_probe(x[:2000], y[:2000], x[2000:], y[2000:])
    assert r.top1 == 1.0 and r.top5 is None and r.train_top1 == 1.0  # 3 classes: top-5 would say nothing


def test_softmax_fit_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(600, spread=2.0)
    xs = standardize(torch.tensor(x))[0]
    wd = 1e-2
    w, b = fit_softmax(xs, torch.tensor(y), 4, wd, max_iter=1000)
    # sklearn minimises C * sum CE + ||W||^2 / 2, i.e. ours with C = 1 / (N * wd).
    sk = LogisticRegression(C=1 / (len(x) * wd), tol=1e-10, max_iter=5000).fit(xs.numpy(), y)
    ours = torch.softmax(xs @ w + b, 1).numpy()
    np.testing.assert_allclose(ours, sk.predict_proba(xs.numpy()), atol=2e-3)


def test_probe_beats_chance_and_reports_its_choice():
    x, y = _blobs(2000, c=8, spread=3.0, seed=2)  # 8 classes: top-5 is reported
    r = linear_probe(x[:1500], y[:1500], x[1500:], y[1500:], weight_decays=(1e-4, 1e-1))
    assert set(r.val_top1) == {1e-4, 1e-1} and r.weight_decay in r.val_top1
    assert 0.5 < r.top1 <= r.top5 <= 1.0


def test_topk_accuracy_vs_brute_force():
    rng = np.random.default_rng(3)
    s, y = rng.normal(size=(200, 7)), rng.integers(0, 7, 200)
    got = topk_accuracy(torch.tensor(s), torch.tensor(y), (1, 3, 5))
    for k in (1, 3, 5):
        ranks = (s > s[np.arange(200), y][:, None]).sum(1)  # classes scoring above the true one
        assert abs(got[k] - (ranks < k).mean()) < 1e-6


def test_weighted_knn_vs_brute_force():
    x, y = _blobs(300, spread=2.5, seed=4)
    q = _blobs(50, spread=2.5, seed=5)[0]
    k, t = 7, 0.1
    got = knn_scores(x, y, q, k=k, temperature=t, num_classes=4, chunk=16).numpy()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    expect = np.zeros((50, 4))
    for i in range(50):
        sims = xn @ qn[i]
        for j in np.argsort(-sims)[:k]:
            expect[i, y[j]] += np.exp(sims[j] / t)
    np.testing.assert_allclose(got, expect, rtol=1e-4)
    acc = knn_accuracy(x, y, x[:40], y[:40], k=1)  # each point is its own nearest neighbour
    assert acc[1] == 1.0
