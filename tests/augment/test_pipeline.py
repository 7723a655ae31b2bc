"""The exercise's T: sampled parameter distributions, reproducibility, independence."""

from __future__ import annotations

import math

import pytest
import torch

from viclab.augment import Augment, eval_transform, sample_params
from viclab.config import AugmentConfig

N = 20000


@pytest.fixture(scope="module")
def params():
    return sample_params(AugmentConfig(), N, 32, 32, torch.Generator().manual_seed(0))


def _rate_ok(rate: float, p: float) -> bool:
    return abs(rate - p) < 5 * math.sqrt(p * (1 - p) / N) + 1e-9


def test_crop_area_and_aspect(params):
    top, left, h, w = params.boxes.unbind(1)
    area = h * w / (32 * 32)
    # rounding w and h to whole pixels moves the area a little around the sampled scale
    assert area.max() <= 1.0 and area.min() >= 0.2 * 0.9
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    aspect = w / h
    assert aspect.min() >= 0.75 * 0.85 and aspect.max() <= 4 / 3 / 0.85
    # area is uniform on [0.2, 1] among accepted draws: its mean sits near 0.6 (slightly
    # below, because large areas with extreme aspect do not fit and are redrawn).
    assert 0.5 < area.mean() < 0.62
    # crops are spread over the image: mean centre near the image centre
    assert abs((left + w / 2).mean() - 16) < 0.3 and abs((top + h / 2).mean() - 16) < 0.3


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
    torch.testing.assert_close(eval_transform(x, cfg), (x.float() / 255 - mean) / std)
