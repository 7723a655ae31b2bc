"""Classifiers on frozen representations: the linear probe and the weighted kNN.

Both take NumPy or torch arrays ``(N, D)`` and integer labels ``(N,)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from viclab.config import EVAL_DEFAULTS as _DEFAULT

# Top-5 is reported only above this many classes: with five or fewer every row is a hit.
TOP5_MIN_CLASSES = 6


def _tensor(a, dtype=torch.float32) -> Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def topk_accuracy(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Share of rows whose label ``(M,)`` int64 is among the ``k`` highest ``scores`` ``(M, C)`` (logits, votes):
    ``{k: accuracy in [0, 1]}`` for each ``k``; ``k`` larger than ``C`` counts every row as a hit."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hit = top == labels.view(-1, 1)
    return {k: hit[:, :k].any(1).float().mean().item() for k in ks}


def standardize(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Centre and scale every dimension by the training set's mean and std (a linear map)."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return tuple((t - mean) / std for t in (train, *others))


def fit_softmax(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int = 300,
                init: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS: minimises ``mean cross-entropy(x W + b, y) +
    weight_decay / 2 * ||W||^2`` over features ``x`` ``(N, D)`` float32 and labels ``y`` ``(N,)`` int64 in
    ``[0, num_classes)``, from ``init`` ``(W, b)`` if given (a warm start). Returns ``W`` ``(D, C)`` and ``b`` ``(C,)``.
    """
    w, b = (t.clone() for t in init) if init else (torch.zeros(x.shape[1], num_classes), torch.zeros(num_classes))
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-7,
                            tolerance_change=1e-10, line_search_fn="strong_wolfe")
    rows = torch.arange(len(y))

    def closure() -> Tensor:
        # Closed-form gradient: autograd would form x.T @ g, which is 5x slower on the CPU
        # than the (g.T @ x).T used here for a tall x.
        logp = torch.addmm(b, x, w).log_softmax(1)
        loss = -logp[rows, y].mean() + 0.5 * weight_decay * w.pow(2).sum()
        g = logp.exp_()
        g[rows, y] -= 1
        g /= len(y)
        w.grad = (g.T @ x).T.contiguous() + weight_decay * w
        b.grad = g.sum(0)
        return loss

    opt.step(closure)
    return w, b


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe accuracies (fractions in [0, 1]) and how the probe was chosen.

    Attributes:
        top1, top5: test accuracy; ``top5`` is ``None`` with at most five classes (every row a hit).
        train_top1: accuracy on the training set (the fit's quality).
        weight_decay: the L2 strength picked on the validation images (``val_x``) if given, else on a held-out tenth.
        val_top1: validation accuracy for each candidate weight decay.
        seconds: wall time of selection and fit.
    """

    top1: float
    top5: float | None
    train_top1: float
    weight_decay: float
    val_top1: dict[float, float]
    seconds: float


def _select_weight_decay(x_fit: Tensor, y_fit: Tensor, x_val: Tensor, y_val: Tensor, num_classes: int,
                         weight_decays: tuple[float, ...], max_iter: int
                         ) -> tuple[float, dict[float, float], tuple[Tensor, Tensor]]:
    """The weight decay of the best validation accuracy, every candidate's accuracy and the chosen fit; fits from the
    strongest to the weakest (each warm-starts the next)."""
    params, val_top1, val_loss, fits = None, {}, {}, {}
    for wd in sorted(weight_decays, reverse=True):
        params = fits[wd] = fit_softmax(x_fit, y_fit, num_classes, wd, max_iter, init=params)
        logits = x_val @ params[0] + params[1]
        val_top1[wd] = topk_accuracy(logits, y_val, (1,))[1]
        val_loss[wd] = F.cross_entropy(logits, y_val).item()
    best = max(val_top1, key=lambda wd: (val_top1[wd], -val_loss[wd]))  # ties: the better held-out fit
    return best, val_top1, fits[best]


def linear_probe(train_x, train_y, test_x, test_y, weight_decays: tuple[float, ...] = _DEFAULT.probe_weight_decays,
                 val_fraction: float = 0.1, seed: int = _DEFAULT.seed, max_iter: int = 300,
                 val_x=None, val_y=None) -> ProbeResult:
    """Train one linear layer on frozen features; report test top-1 (and top-5 above five classes).

    Features are standardised with the training statistics (still a linear probe). The weight decay is chosen by
    accuracy (ties: cross-entropy) on the validation set ``val_x``/``val_y`` when given (a dataset's own ``val/``),
    else on a seeded held-out tenth of the training set; then the probe is refit on the whole training set.

    Args:
        train_x: ``(N, D)`` training representations; ``train_y``: ``(N,)`` labels.
        test_x: ``(M, D)``; ``test_y``: ``(M,)``.
        weight_decays: candidates; one value skips the selection.
        val_x, val_y: optional ``(V, D)`` validation representations and labels.
    """
    t0 = time.perf_counter()
    val = val_x is not None and len(val_x) > 0
    xtr, xte, *xva = standardize(_tensor(train_x), _tensor(test_x), *([_tensor(val_x)] if val else []))
    ytr, yte = _tensor(train_y, torch.int64), _tensor(test_y, torch.int64)
    yva = _tensor(val_y, torch.int64) if val else ytr[:0]
    num_classes = int(max(ytr.max(), yte.max() if len(yte) else 0, yva.max() if len(yva) else 0)) + 1
    if len(weight_decays) > 1 and val:
        best, val_top1, init = _select_weight_decay(xtr, ytr, xva[0], yva, num_classes, weight_decays, max_iter)
    elif len(weight_decays) > 1:
        perm = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, int(len(xtr) * val_fraction))
        held, kept = perm[:n_val], perm[n_val:]  # gathered once for all candidates
        best, val_top1, init = _select_weight_decay(xtr[kept], ytr[kept], xtr[held], ytr[held], num_classes,
                                                    weight_decays, max_iter)
    else:
        best, val_top1, init = weight_decays[0], {}, None
    w, b = fit_softmax(xtr, ytr, num_classes, best, max_iter, init=init)  # warm start: a few more iterations
    test_acc = topk_accuracy(xte @ w + b, yte, (1, 5))
    train_acc = topk_accuracy(xtr @ w + b, ytr, (1,))
    top5 = test_acc[5] if num_classes >= TOP5_MIN_CLASSES else None
    return ProbeResult(test_acc[1], top5, train_acc[1], best, val_top1, time.perf_counter() - t0)


def knn_scores(train_x, train_y, test_x, k: int = _DEFAULT.knn_k, temperature: float = _DEFAULT.knn_temperature,
               num_classes: int | None = None, chunk: int = 1024) -> Tensor:
    """Weighted kNN class votes ``(M, C)`` on cosine similarity (as solo-learn and lightly report it): each of a test
    point's ``k`` most similar training points votes for its class with weight ``exp(cos / temperature)``."""
    tr = F.normalize(_tensor(train_x), dim=1)
    te = F.normalize(_tensor(test_x), dim=1)
    ytr = _tensor(train_y, torch.int64)
    c = num_classes or int(ytr.max()) + 1
    k = min(k, len(tr))
    out = torch.zeros(len(te), c)
    for s in range(0, len(te), chunk):
        sim, idx = (te[s:s + chunk] @ tr.T).topk(k, dim=1)
        out[s:s + chunk].scatter_add_(1, ytr[idx], (sim / temperature).exp())
    return out


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = _DEFAULT.knn_k,
                 temperature: float = _DEFAULT.knn_temperature) -> dict[int, float | None]:
    """Top-1 and top-5 accuracy of :func:`knn_scores` (labels: NumPy or torch); top-5 is
    ``None`` with at most five classes."""
    ytr, y = _tensor(train_y, torch.int64), _tensor(test_y, torch.int64)
    c = int(max(ytr.max(), y.max() if len(y) else 0)) + 1
    acc = topk_accuracy(knn_scores(train_x, ytr, test_x, k, temperature, c), y, (1, 5))
    return {1: acc[1], 5: acc[5] if c >= TOP5_MIN_CLASSES else None}
