"""VICReg loss vs an independent NumPy implementation of spec §1's equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.losses import VICRegLoss, covariance, invariance, variance


def np_terms(z, zp, gamma=1.0, eps=1e-4, variant="spec"):
    """Spec §1 written out loop by loop, in float64 NumPy."""
    b, d = z.shape
    inv = sum(np.mean((z[i] - zp[i]) ** 2) for i in range(b)) / b

    def var(x):
        out = 0.0
        for j in range(d):
            col = x[:, j]
            v = np.sum((col - col.mean()) ** 2) / (b - 1)
            sigma = np.sqrt(v + eps) if variant == "official" else np.sqrt(v) + eps
            out += max(0.0, gamma - sigma)
        return out / d

    def cov(x):
        xc = x - x.mean(0)
        c = sum(np.outer(xc[i], xc[i]) for i in range(b)) / (b - 1)
        return sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d

    return inv, var(z), var(zp), cov(z), cov(zp)


@pytest.mark.parametrize("b,d", [(2, 3), (5, 8), (32, 16), (64, 7)])
@pytest.mark.parametrize("variant", ["spec", "official"])
def test_terms_and_total_match_numpy(b, d, variant):
    rng = np.random.default_rng(b * 100 + d)
    # Mix of scales so some dimensions sit above gamma and some below.
    z = rng.normal(size=(b, d)) * rng.uniform(0.1, 2.0, size=d)
    zp = z + 0.3 * rng.normal(size=(b, d))
    inv, vz, vzp, cz, czp = np_terms(z, zp, variant=variant)
    tz, tzp = torch.from_numpy(z), torch.from_numpy(zp)
    assert invariance(tz, tzp).item() == pytest.approx(inv, rel=1e-10)
    assert variance(tz, variant=variant).item() == pytest.approx(vz, rel=1e-10, abs=1e-12)
    assert covariance(tz).item() == pytest.approx(cz, rel=1e-10)
    lam, mu, nu = 25.0, 25.0, 1.0
    var_part = (vz + vzp) / 2 if variant == "official" else vz + vzp
    out = VICRegLoss(lam, mu, nu, variant=variant)(tz, tzp)
    assert out.loss.item() == pytest.approx(lam * inv + mu * var_part + nu * (cz + czp), rel=1e-6)
    assert out.invariance.item() == pytest.approx(inv, rel=1e-6)
    assert out.variance.item() == pytest.approx(var_part, rel=1e-6, abs=1e-9)
    assert out.covariance.item() == pytest.approx(cz + czp, rel=1e-6)


def test_custom_coefficients_and_gamma():
    rng = np.random.default_rng(1)
    z, zp = rng.normal(size=(16, 4)), rng.normal(size=(16, 4))
    inv, vz, vzp, cz, czp = np_terms(z, zp, gamma=2.0, eps=1e-3)
    out = VICRegLoss(3.0, 0.0, 0.5, gamma=2.0, eps=1e-3)(torch.from_numpy(z), torch.from_numpy(zp))
    assert out.loss.item() == pytest.approx(3.0 * inv + 0.5 * (cz + czp), rel=1e-6)
    assert out.variance.item() == pytest.approx(vz + vzp, rel=1e-6)


def test_collapsed_batch_hits_the_variance_hinge():
    # Every sample identical: sigma = eps, so var = gamma - eps; cov and inv vanish.
    z = torch.ones(8, 5, dtype=torch.float64)
    assert variance(z, gamma=1.0, eps=1e-4).item() == pytest.approx(1 - 1e-4)
    assert variance(z, variant="official").item() == pytest.approx(1 - np.sqrt(1e-4))
    assert covariance(z).item() == 0.0
    assert invariance(z, z).item() == 0.0


def test_gradcheck_float64():
    torch.manual_seed(0)
    z = (torch.randn(6, 4, dtype=torch.float64) * 0.5).requires_grad_()
    zp = (torch.randn(6, 4, dtype=torch.float64) * 0.5).requires_grad_()
    for variant in ("spec", "official"):
        loss = VICRegLoss(variant=variant)
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b).loss, (z, zp))
        assert torch.autograd.gradcheck(lambda a: variance(a, variant=variant), (z,))
    assert torch.autograd.gradcheck(covariance, (z,))
    assert torch.autograd.gradcheck(invariance, (z, zp))


def test_bf16_inputs_are_computed_in_fp32():
    torch.manual_seed(0)
    z, zp = torch.randn(32, 8), torch.randn(32, 8)
    ref = VICRegLoss()(z.bfloat16().float(), zp.bfloat16().float())
    out = VICRegLoss()(z.bfloat16(), zp.bfloat16())
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)


def test_unknown_variant_rejected():
    with pytest.raises(ValueError):
        VICRegLoss(variant="lightly")


@pytest.mark.parametrize("m", [1, 3])
def test_multi_crop_matches_the_pairs_written_out(m):
    """Multi-crop: invariance averaged over the (large, large) and (large, small) pairs, variance and covariance
    averaged over all views and doubled (so two views give spec §1 exactly), from the NumPy terms of each pair."""
    rng = np.random.default_rng(m)
    b, d = 12, 6
    z, zp = rng.normal(size=(b, d)), rng.normal(size=(b, d)) * 0.5
    small = [rng.normal(size=(b, d)) * s for s in (0.3, 1.5, 0.8)[:m]]
    pairs = [np_terms(z, zp)] + [np_terms(g, s) for s in small for g in (z, zp)]
    inv = np.mean([p[0] for p in pairs])
    per_view = [np_terms(v, v) for v in (z, zp, *small)]
    var = 2 * np.mean([p[1] for p in per_view])
    cov = 2 * np.mean([p[3] for p in per_view])
    local = torch.from_numpy(np.concatenate(small))  # rows k * b + i: image i's k-th small view
    out = VICRegLoss()(torch.from_numpy(z), torch.from_numpy(zp), local)
    assert out.invariance.item() == pytest.approx(inv, rel=1e-9)
    assert out.variance.item() == pytest.approx(var, rel=1e-9)
    assert out.covariance.item() == pytest.approx(cov, rel=1e-9)
    assert out.loss.item() == pytest.approx(25 * inv + 25 * var + cov, rel=1e-9)
