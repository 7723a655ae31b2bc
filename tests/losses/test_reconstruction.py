"""Reconstruction error vs a brute-force NumPy loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.losses.reconstruction import reconstruction_errors, reconstruction_loss


def np_errors(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Per-image mean of squared differences, element by element, in float64."""
    b, c, h, w = x.shape
    out = np.zeros(b)
    for i in range(b):
        total = 0.0
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    total += (float(x[i, ch, r, col]) - float(x_hat[i, ch, r, col])) ** 2
        out[i] = total / (c * h * w)
    return out


def test_errors_match_numpy_loop():
    g = torch.Generator().manual_seed(0)
    x, x_hat = torch.rand(4, 3, 6, 5, generator=g), torch.rand(4, 3, 6, 5, generator=g)
    err = reconstruction_errors(x, x_hat)
    assert err.shape == (4,)
    ref = np_errors(x.double().numpy(), x_hat.double().numpy())
    np.testing.assert_allclose(err.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(reconstruction_loss(x, x_hat).item(), ref.mean(), rtol=1e-6)
    assert reconstruction_loss(x, x_hat).ndim == 0


def test_zero_for_perfect_reconstruction():
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(reconstruction_errors(x, x.clone()), torch.zeros(3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_computed_in_fp32(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g).to(dtype)
    x_hat = (x.float() + 1e-3 * torch.randn(2, 3, 32, 32, generator=g)).to(dtype)
    err = reconstruction_errors(x, x_hat)
    assert err.dtype == torch.float32 and reconstruction_loss(x, x_hat).dtype == torch.float32
    ref = np_errors(x.double().numpy(), x_hat.double().numpy())
    np.testing.assert_allclose(err.numpy(), ref, rtol=1e-5)


def test_float64_kept():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    assert reconstruction_errors(x, torch.zeros_like(x)).dtype == torch.float64


def test_gradient_matches_formula():
    x = torch.rand(2, 3, 4, 4)
    x_hat = torch.rand(2, 3, 4, 4, requires_grad=True)
    reconstruction_loss(x, x_hat).backward()
    torch.testing.assert_close(x_hat.grad, 2 * (x_hat.detach() - x) / x.numel())


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_errors(torch.rand(2, 3, 4, 4), torch.rand(1, 3, 4, 4))
