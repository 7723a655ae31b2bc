"""Spectrogram views: each op against its definition, per-clip independence, seeding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from viclab.config import Config, SpecViewsConfig
from viclab.views import SpecViews, view_maker
from viclab.views.spectro import band_masks, mix_power, time_crop

OFF = SpecViewsConfig(crop=1.0, gain_db=0.0, noise_p=0.0, mix_p=0.0, time_masks=0, freq_masks=0)


def spec(b: int = 6, m: int = 16, t: int = 40, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, m, t, generator=g) * 10 - 40


def test_everything_off_is_the_identity():
    x = spec()
    torch.testing.assert_close(SpecViews(OFF)(x, torch.Generator().manual_seed(0)), x)


def test_time_crop_is_a_contiguous_window_of_each_clip():
    x = torch.arange(40.0).expand(5, 1, 3, 40).clone()
    out = time_crop(x, 10, torch.Generator().manual_seed(1))
    assert out.shape == (5, 1, 3, 10)
    starts = out[:, 0, 0, 0]
    torch.testing.assert_close(out, (starts.view(-1, 1, 1, 1) + torch.arange(10.0)).expand(5, 1, 3, 10))
    assert starts.min() >= 0 and starts.max() <= 30 and len(set(starts.tolist())) > 1  # clips differ


def test_mix_power_reaches_the_asked_snr():
    x, other = spec(seed=1), spec(seed=2)
    snr = torch.tensor([0.0, 10.0, 20.0, 5.0, 5.0, 5.0])
    active = torch.tensor([True, True, True, True, False, True])
    out = mix_power(x, other, snr, active)
    px, po, pout = (torch.pow(10.0, v / 10) for v in (x, other, out))
    added = (pout - px).sum((1, 2, 3))
    measured = 10 * torch.log10(px.sum((1, 2, 3)) / added.clamp_min(1e-30))
    np.testing.assert_allclose(measured[active].numpy(), snr[active].numpy(), atol=1e-3)
    torch.testing.assert_close(out[4], x[4])  # not active: unchanged


def test_masks_fill_bands_with_the_clip_mean():
    x = spec(b=50)
    out = band_masks(x, count=1, max_width=5, dim=3, gen=torch.Generator().manual_seed(0))
    changed = (out != x).any(2).squeeze(1)  # (B, T): masked frames
    mean = x.mean((1, 2, 3))
    for i in range(len(x)):
        cols = torch.nonzero(changed[i]).flatten()
        if len(cols):
            assert cols.max() - cols.min() + 1 == len(cols) <= 5  # one contiguous band
            torch.testing.assert_close(out[i, 0, :, cols], mean[i].expand(16, len(cols)))
    assert 0 < changed.any(1).float().mean() < 1


def test_gain_shifts_every_bin_by_one_amount_per_clip():
    cfg = dataclasses.replace(OFF, gain_db=6.0)
    x = spec()
    d = SpecViews(cfg)(x, torch.Generator().manual_seed(3)) - x
    per_clip = d.flatten(1)
    torch.testing.assert_close(per_clip, per_clip[:, :1].expand_as(per_clip))
    assert per_clip[:, 0].abs().max() <= 6 and per_clip[:, 0].std() > 0


def test_views_are_seeded_and_pairs_independent():
    views = SpecViews(SpecViewsConfig())
    x = spec()
    a1, a2 = views.pair(x, torch.Generator().manual_seed(7))
    b1, b2 = views.pair(x, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a2, b2)
    assert a1.shape == (6, 1, 16, 20) and not torch.equal(a1, a2)
    assert torch.isfinite(a1).all()


def test_view_maker_dispatches_on_the_modality():
    cfg = Config()
    assert isinstance(view_maker("spectrogram", cfg), SpecViews)
    assert not isinstance(view_maker("image", cfg), SpecViews)


@pytest.mark.parametrize("field, value", [("crop", 0.0), ("noise_p", 1.5), ("mix_snr_db", (20.0, 5.0))])
def test_config_checks(field, value):
    from viclab.core.errors import ViclabError

    with pytest.raises(ViclabError):
        SpecViewsConfig(**{field: value})


def test_frequency_shift_moves_every_band_by_one_amount_per_clip():
    from viclab.views.spectro import freq_shift

    x = torch.arange(16.0).view(1, 1, 16, 1).expand(40, 1, 16, 5).clone()
    out = freq_shift(x, 3, torch.Generator().manual_seed(0))
    shift = x[:, 0, 8, 0] - out[:, 0, 8, 0]  # the band that lands on mel 8 came from 8 - shift
    assert set(shift.tolist()) <= set(range(-3, 4)) and len(set(shift.tolist())) > 3
    for i, s in enumerate(shift.long().tolist()):
        expected = (torch.arange(16) - s).clamp(0, 15).float()
        torch.testing.assert_close(out[i, 0, :, 2], expected)
