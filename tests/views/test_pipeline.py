"""The exercise's T: sampled parameters vs torchvision's distributions, jitter order applied, reproducibility."""

from __future__ import annotations

import colorsys
import itertools
import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from viclab.config import AugmentConfig
from viclab.views import Augment, ViewParams, apply_params, eval_transform, sample_params

N = 20000


@pytest.fixture(scope="module")
def params():
    return sample_params(AugmentConfig(), N, 32, 32, torch.Generator().manual_seed(0))


def _rate_ok(rate: float, p: float) -> bool:
    return abs(rate - p) < 5 * math.sqrt(p * (1 - p) / N) + 1e-9


def torchvision_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                           seed: int) -> np.ndarray:
    """``n`` draws of torchvision's ``RandomResizedCrop.get_params`` as ``(top, left, h, w)`` rows, in plain Python.

    Re-implements pytorch/vision ``torchvision/transforms/transforms.py`` (``RandomResizedCrop.get_params``):
    10 attempts of ``target_area = area * U(scale)``, ``aspect = exp(U(log ratio))``, ``w = round(sqrt(target_area *
    aspect))``, ``h = round(sqrt(target_area / aspect))``; the first with ``0 < w <= W and 0 < h <= H`` gets ``i =
    randint(0, H - h + 1)``, ``j = randint(0, W - w + 1)`` (upper bound exclusive); else the central crop of the
    whole image with its aspect clamped into ``ratio``.
    """
    rng = random.Random(seed)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    boxes = []
    for _ in range(n):
        for _ in range(10):
            target_area = height * width * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(log_lo, log_hi))
            w, h = round(math.sqrt(target_area * aspect)), round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                boxes.append((rng.randrange(0, height - h + 1), rng.randrange(0, width - w + 1), h, w))
                break
        else:
            in_ratio = width / height
            if in_ratio < min(ratio):
                w, h = width, round(width / min(ratio))
            elif in_ratio > max(ratio):
                w, h = round(height * max(ratio)), height
            else:
                w, h = width, height
            boxes.append(((height - h) // 2, (width - w) // 2, h, w))
    return np.array(boxes)


def _chi2_same_distribution(a: np.ndarray, b: np.ndarray, min_count: int = 10) -> float:
    """p-value of a chi-square test that two samples of discrete values share one distribution (rare values pooled)."""
    values, inv = np.unique(np.r_[a, b], return_inverse=True)
    ca, cb = np.bincount(inv[:len(a)], minlength=len(values)), np.bincount(inv[len(a):], minlength=len(values))
    keep = ca + cb >= min_count
    table = np.stack([np.r_[ca[keep], ca[~keep].sum()], np.r_[cb[keep], cb[~keep].sum()]])
    return stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue


CROP_N = 50_000
CROP_P_MIN = 1e-4  # 24 tests in all: a correct sampler fails one by chance with probability < 0.3%


@pytest.mark.parametrize("height, width, scale, ratio", [
    (32, 32, (0.2, 1.0), (3 / 4, 4 / 3)),  # the exercise's crop: the fallback is rare (0.3%)
    (24, 40, (0.5, 1.0), (0.5, 1.5)),  # wide image, large crops: 8% fall back to the central 24 x 36 crop
    (40, 24, (0.5, 1.0), (2 / 3, 2.0)),  # tall image: 8% fall back to the central 36 x 24 crop
])
def test_crop_boxes_follow_torchvision_distribution(height, width, scale, ratio):
    cfg = AugmentConfig(crop_scale=scale, crop_ratio=ratio)
    got = sample_params(cfg, CROP_N, height, width, torch.Generator().manual_seed(0)).boxes.numpy()
    assert np.array_equal(got, np.round(got))
    got = got.astype(np.int64)
    ref = torchvision_crop_boxes(CROP_N, height, width, scale, ratio, seed=1)
    top, left, h, w = got.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    p = {"area": stats.ks_2samp(h * w, ref[:, 2] * ref[:, 3]).pvalue,
         "aspect": stats.ks_2samp(w / h, ref[:, 3] / ref[:, 2]).pvalue,
         "h, w": _chi2_same_distribution(h * 1000 + w, ref[:, 2] * 1000 + ref[:, 3])}
    for j, name in enumerate(("top", "left", "h", "w")):
        p[name] = _chi2_same_distribution(got[:, j], ref[:, j])
    # where the crop sits given its size: top uniform on 0..H-h
    p["top | h"] = _chi2_same_distribution(top * 1000 + h, ref[:, 0] * 1000 + ref[:, 2])
    assert min(p.values()) > CROP_P_MIN, p


def test_rates(params):
    assert _rate_ok(params.flip.float().mean().item(), 0.5)
    assert _rate_ok(params.gray.float().mean().item(), 0.2)
    assert _rate_ok((params.blur_sigma > 0).float().mean().item(), 0.5)
    assert not params.solarize.any()


def test_jitter_ranges(params):
    b, c, s, h = params.jitter.unbind(1)
    for f, lo, hi in [(b, 0.6, 1.4), (c, 0.6, 1.4), (s, 0.8, 1.2), (h, -0.1, 0.1)]:
        assert f.min() >= lo and f.max() <= hi
        assert abs(f.mean().item() - (lo + hi) / 2) < 0.01
        # uniform: a quarter of the draws in each quarter of the range
        q = ((f - lo) / (hi - lo) * 4).floor().clamp(max=3)
        assert all(_rate_ok((q == i).float().mean().item(), 0.25) for i in range(4))
    sigma = params.blur_sigma[params.blur_sigma > 0]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean().item() - 1.05) < 0.02


def test_jitter_order_is_a_uniform_permutation(params):
    order = params.jitter_order
    assert (order.sort(1).values == torch.arange(4)).all()
    for pos in range(4):
        for op in range(4):
            assert _rate_ok((order[:, pos] == op).float().mean().item(), 0.25)


def _luma(x: np.ndarray) -> np.ndarray:
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def _jitter_reference(img: np.ndarray, factors: np.ndarray, order) -> np.ndarray:
    """Colour jitter of one ``(3, H, W)`` image in ``[0, 1]``, ops in ``order`` (0 brightness, 1 contrast, 2
    saturation, 3 hue), by torchvision's definitions; hue through Python's colorsys."""
    x = img.astype(np.float64)
    for op in order:
        f = float(factors[op])
        if op == 0:
            x = np.clip(x * f, 0, 1)
        elif op == 1:
            x = np.clip(f * x + (1 - f) * _luma(x).mean(), 0, 1)
        elif op == 2:
            x = np.clip(f * x + (1 - f) * _luma(x)[None], 0, 1)
        else:
            px = [colorsys.rgb_to_hsv(*p) for p in x.reshape(3, -1).T]
            x = np.array([colorsys.hsv_to_rgb((hh + f) % 1.0, ss, vv) for hh, ss, vv in px]).T.reshape(x.shape)
    return x


def test_jitter_order_is_applied():
    side = 16
    rng = np.random.default_rng(0)
    perms = list(itertools.permutations(range(4)))
    # 24 copies of one colourful image, one per op order, with factors that clip and shift hue; then 8 random images
    # with random factors and orders.
    base = rng.integers(0, 256, (3, side, side))
    images = np.concatenate([np.repeat(base[None], len(perms), 0), rng.integers(0, 256, (8, 3, side, side))])
    factors = np.concatenate([np.tile([1.5, 1.6, 0.4, 0.2], (len(perms), 1)),
                              np.c_[rng.uniform(0.5, 1.5, (8, 3)), rng.uniform(-0.3, 0.3, 8)]])
    orders = np.array(perms + [rng.permutation(4) for _ in range(8)])
    b = len(images)
    no = torch.zeros(b, dtype=torch.bool)
    params = ViewParams(boxes=torch.tensor([[0.0, 0.0, side, side]]).repeat(b, 1), flip=no,  # crop = identity
                        jitter=torch.tensor(factors, dtype=torch.float32), jitter_order=torch.tensor(orders),
                        gray=no, blur_sigma=torch.zeros(b), solarize=no)
    cfg = AugmentConfig(size=side, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), blur_p=0.0, grayscale_p=0.0,
                        solarize_p=0.0)
    got = apply_params(torch.tensor(images, dtype=torch.uint8), params, cfg).double().numpy()
    expect = np.stack([_jitter_reference(img / 255, f, o) for img, f, o in zip(images, factors, orders)])
    np.testing.assert_allclose(got, expect, atol=2e-5)
    # the order matters for these factors: the 24 orders of one image give 24 different views
    first = got[:len(perms)].reshape(len(perms), -1)
    gaps = np.abs(first[:, None] - first[None]).max(-1)
    assert gaps[~np.eye(len(perms), dtype=bool)].min() > 1e-3


def test_jitter_probability_sets_identity():
    p = sample_params(AugmentConfig(jitter_p=0.8), N, 32, 32, torch.Generator().manual_seed(1))
    identity = (p.jitter == torch.tensor([1.0, 1.0, 1.0, 0.0])).all(1)
    assert _rate_ok(identity.float().mean().item(), 0.2)


def test_seeded_reproducible_and_per_image_independent():
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).repeat(8, 1, 1, 1)
    aug = Augment(AugmentConfig())
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    # identical inputs in one batch get different views
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 8))


def test_output_size_and_grayscale_views():
    x = torch.randint(0, 256, (64, 3, 48, 40), dtype=torch.uint8)
    cfg = AugmentConfig(size=24, grayscale_p=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    v = Augment(cfg)(x, torch.Generator().manual_seed(0))
    assert v.shape == (64, 3, 24, 24)
    torch.testing.assert_close(v[:, 0], v[:, 1])
    torch.testing.assert_close(v[:, 1], v[:, 2])
    assert v.min() >= 0 and v.max() <= 1


def test_eval_transform_normalises_only():
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    cfg = AugmentConfig()
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    torch.testing.assert_close(eval_transform(x, cfg, "image"), (x.float() / 255 - mean) / std)
    spec = torch.randn(2, 1, 8, 8)
    assert eval_transform(spec, cfg, "spectrogram") is spec  # a spectrogram encoder standardises itself


def test_views_queue_without_host_syncs():
    """Both views of a batch in one call with no op that makes a GPU wait for the device or copy from the
    host: no nonzero (boolean-mask indexing calls it), no .item(), no tensor built from host data."""
    from torch.profiler import ProfilerActivity, profile

    aug = Augment(AugmentConfig())  # every op of T active: crop, flip, jitter, grayscale, blur, solarize
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    aug.pair(x, torch.Generator().manual_seed(0))  # constants made once, on the first call
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        aug.pair(x, torch.Generator().manual_seed(1))
    names = {e.name for e in prof.events()}
    assert "aten::affine_grid_generator" in names or "aten::grid_sampler_2d" in names  # the profile saw the call
    syncing = {"aten::nonzero", "aten::nonzero_static", "aten::_local_scalar_dense", "aten::item",
               "aten::lift_fresh", "aten::masked_select", "aten::masked_scatter", "aten::index", "aten::index_put_"}
    assert not names & syncing


def test_pair_is_two_independent_draws_per_image():
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).repeat(16, 1, 1, 1)
    aug = Augment(AugmentConfig())
    v1, v2 = aug.pair(x, torch.Generator().manual_seed(3))
    w1, w2 = aug.pair(x, torch.Generator().manual_seed(3))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    assert v1.shape == v2.shape == (16, 3, 32, 32)
    views = torch.cat([v1, v2]).flatten(1)
    # 32 views of one image: no two equal (each its own crop, jitter, ...)
    same = (views[:, None] == views[None]).all(-1)
    assert same.sum() == len(views)


def test_multi_crop_views_are_the_pair_then_small_crops():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    cfg = AugmentConfig(local_crops=3, local_size=16, local_crop_scale=(0.05, 0.4), jitter_p=0.0, grayscale_p=0.0,
                        blur_p=0.0, hflip_p=0.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    v1, v2, small = Augment(cfg).views(x, torch.Generator().manual_seed(5))
    w1, w2 = Augment(cfg).pair(x, torch.Generator().manual_seed(5))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)  # the pair is drawn first, as without small views
    assert small.shape == (24, 3, 16, 16)
    # Row k * 8 + i is a small crop of image i: its pixel range lies within image i's, and (a crop of at most 40%
    # of the area, resized) it is not the whole image shrunk.
    for k in range(3):
        for i in range(8):
            crop, img = small[k * 8 + i], x[i].float() / 255
            assert img.min() - 1e-5 <= crop.min() and crop.max() <= img.max() + 1e-5
            whole = torch.nn.functional.interpolate(img[None], size=16, mode="bilinear", antialias=True)[0]
            assert not torch.allclose(crop, whole, atol=1e-2)
    assert Augment(AugmentConfig()).views(x, torch.Generator().manual_seed(5))[0].shape == (8, 3, 32, 32)
    assert len(Augment(AugmentConfig()).views(x, torch.Generator())) == 2
