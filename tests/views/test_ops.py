"""Batched ops vs independent references (colorsys, SciPy, NumPy, slicing)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from scipy import ndimage

from viclab.views import ops


def _rand_images(b=4, h=9, w=7, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_adjust_hue_matches_colorsys():
    x = _rand_images(b=4)
    # greys, saturated primaries and channel ties, where hue branches are delicate
    x[0, :, 0, :5] = torch.tensor([[0.5, 1.0, 0.0, 0.7, 0.2], [0.5, 0.0, 0.0, 0.7, 0.9], [0.5, 0.0, 1.0, 0.1, 0.9]])
    shift = torch.tensor([-0.1, 0.05, 0.5, 0.0], dtype=torch.float64)
    out = ops.adjust_hue(x, shift)
    torch.testing.assert_close(out[3], x[3])
    for i in range(4):
        px = x[i].permute(1, 2, 0).reshape(-1, 3).numpy()
        ref = []
        for p in px:
            h, s, v = colorsys.rgb_to_hsv(*p)
            ref.append(colorsys.hsv_to_rgb((h + shift[i].item()) % 1.0, s, v))
        np.testing.assert_allclose(out[i].permute(1, 2, 0).reshape(-1, 3).numpy(), np.array(ref), atol=1e-12)


def test_brightness_contrast_saturation_formulas():
    x = _rand_images()
    f = torch.tensor([0.6, 1.0, 1.3, 1.4], dtype=torch.float64)
    xn, fn = x.numpy(), f.numpy()[:, None, None, None]
    luma = 0.299 * xn[:, 0] + 0.587 * xn[:, 1] + 0.114 * xn[:, 2]
    gray = ops.grayscale(x)  # the blend targets: 0 (brightness), mean luma (contrast), luma (saturation)
    np.testing.assert_allclose(ops.blend_towards(x, f, 0.0).numpy(), np.clip(xn * fn, 0, 1))
    mean = luma.mean(axis=(1, 2))[:, None, None, None]
    np.testing.assert_allclose(ops.blend_towards(x, f, gray.mean(dim=(1, 2, 3), keepdim=True)).numpy(),
                               np.clip(fn * xn + (1 - fn) * mean, 0, 1))
    np.testing.assert_allclose(ops.blend_towards(x, f, gray).numpy(), np.clip(fn * xn + (1 - fn) * luma[:, None], 0, 1))


@pytest.mark.parametrize("k", [3, 5])
def test_gaussian_blur_matches_scipy(k):
    x = _rand_images(b=3, h=10, w=12)
    sigma = torch.tensor([0.1, 1.0, 2.0], dtype=torch.float64)
    out = ops.gaussian_blur(x, sigma, k)
    r = k // 2
    for i, s in enumerate(sigma.tolist()):
        w = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        w /= w.sum()
        # torch's "reflect" padding is SciPy's "mirror" (edge not repeated)
        ref = ndimage.correlate1d(ndimage.correlate1d(x[i].numpy(), w, axis=2, mode="mirror"), w, axis=1,
                                  mode="mirror")
        np.testing.assert_allclose(out[i].numpy(), ref, atol=1e-12)


def test_blur_sigma_zero_is_identity():
    x = _rand_images()
    torch.testing.assert_close(ops.gaussian_blur(x, torch.zeros(4, dtype=torch.float64), 3), x)


def test_resized_crop_of_full_image_is_identity_and_flip_mirrors():
    x = _rand_images(b=2, h=8, w=8)
    boxes = torch.tensor([[0, 0, 8, 8], [0, 0, 8, 8]], dtype=torch.float64)
    torch.testing.assert_close(ops.resized_crop(x, boxes, torch.tensor([False, False]), 8), x)
    torch.testing.assert_close(ops.resized_crop(x, boxes, torch.tensor([True, True]), 8), x.flip(-1))


def test_resized_crop_selects_the_box():
    x = _rand_images(b=2, h=16, w=20)
    boxes = torch.tensor([[3, 5, 8, 8], [8, 12, 8, 8]], dtype=torch.float64)
    out = ops.resized_crop(x, boxes, torch.tensor([False, True]), 8)
    torch.testing.assert_close(out[0], x[0, :, 3:11, 5:13])
    torch.testing.assert_close(out[1], x[1, :, 8:16, 12:20].flip(-1))


def test_resized_crop_upscales_like_bilinear_interpolate():
    x = _rand_images(b=1, h=16, w=16)
    out = ops.resized_crop(x, torch.tensor([[4.0, 4.0, 8.0, 8.0]], dtype=torch.float64), torch.tensor([False]), 16)
    ref = torch.nn.functional.interpolate(x[:, :, 4:12, 4:12], size=16, mode="bilinear", align_corners=False)
    # Interior pixels agree exactly; the outermost ring may blend one pixel outside the box.
    torch.testing.assert_close(out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])


def test_solarize_inverts_bright_pixels_where_asked():
    x = _rand_images(b=2)
    out = ops.solarize(x, torch.tensor([True, False]))
    torch.testing.assert_close(out[0], torch.where(x[0] >= 0.5, 1 - x[0], x[0]))
    torch.testing.assert_close(out[1], x[1])


def test_crop_fallback_when_no_attempt_fits():
    # scale > 1 of the area can never fit: torchvision falls back to the central crop.
    boxes = ops.crop_boxes(5, 10, 20, (1.5, 2.0), (1.0, 1.0), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert boxes.tolist() == [[0.0, 5.0, 10.0, 10.0]] * 5
