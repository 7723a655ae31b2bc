"""Spectrogram networks: the DCASE 2020 baseline's shapes and frame stacking against its description,
input standardisation, the spectrogram CNN and autoencoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from viclab.models import DenseAutoencoder, SpecAutoencoder, Standardize, fit_standardizers, spec_cnn, stack_frames


def test_frame_stacking_follows_the_baseline_loop():
    """The baseline (common.py, file_to_vector_array): vector[:, n_mels*t : n_mels*(t+1)] = logmel[:, t : t + n]."""
    rng = np.random.default_rng(0)
    n_mels, frames, context = 128, 313, 5
    logmel = rng.standard_normal((n_mels, frames)).astype(np.float32)
    n = frames - context + 1
    ref = np.zeros((n, n_mels * context), dtype=np.float32)
    for t in range(context):
        ref[:, n_mels * t:n_mels * (t + 1)] = logmel[:, t:t + n].T
    ours = stack_frames(torch.from_numpy(logmel)[None, None], context)
    assert ours.shape == (1, 309, 640)
    np.testing.assert_array_equal(ours[0].numpy(), ref)


def test_dense_autoencoder_is_the_published_architecture():
    """640 -> 128 x4 -> 8 -> 128 x4 -> 640, each hidden layer Dense + BatchNorm + ReLU, a linear output."""
    net = DenseAutoencoder()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (640, 128), (128, 128), (128, 128), (128, 128), (128, 8),
        (8, 128), (128, 128), (128, 128), (128, 128), (128, 640)]
    kinds = [type(m) for m in net.modules() if not isinstance(m, nn.Sequential | DenseAutoencoder)]
    hidden = [kinds[i:i + 3] for i in range(0, 27, 3)]
    assert all(h == [nn.Linear, nn.BatchNorm1d, nn.ReLU] for h in hidden) and kinds[27:] == [nn.Linear]
    # Keras counts 4 numbers per BatchNorm unit (gamma, beta, moving mean, moving variance): the baseline's
    # model summary total follows from the layer list above.
    dense = sum(i * o + o for i, o in [(m.in_features, m.out_features) for m in linears])
    bn_units = sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    assert sum(p.numel() for p in net.parameters()) == dense + 2 * bn_units
    assert dense + 4 * bn_units == 269_992
    v = torch.randn(3, 309, 640)
    assert net(v).shape == v.shape


def test_standardize_fits_once_and_travels_in_the_state_dict():
    x = torch.randn(50, 1, 8, 20) * 7 + 3
    net, _ = spec_cnn()
    assert fit_standardizers(net, x) == 1 and fit_standardizers(net, x * 100) == 0  # fitted once
    z = net.standardize(x)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std(unbiased=False)) - 1) < 1e-4
    other, _ = spec_cnn()
    other.load_state_dict(net.state_dict())
    assert bool(other.standardize.fitted) and float(other.standardize.mean) == pytest.approx(float(x.mean()), rel=1e-5)


def test_spec_cnn_takes_any_spectrogram_size():
    net, dim = spec_cnn()
    net.eval()
    for shape in ((2, 1, 64, 63), (2, 1, 128, 313), (2, 1, 32, 17)):
        assert net(torch.randn(shape)).shape == (2, dim)


def test_spec_autoencoder_pads_crops_and_works_in_db():
    ae = SpecAutoencoder(n_mels=64, frames=126, widths=(8, 16, 32), latent=16)
    x = torch.randn(4, 1, 64, 126) * 10 - 50
    fit_standardizers(ae, x)
    assert ae.padded == 128
    with torch.no_grad():
        out = ae(x)
    assert out.shape == x.shape
    # its output is in the input's units: the mean of an untrained reconstruction sits near the data's mean
    assert abs(float(out.mean()) - float(x.mean())) < 2 * float(x.std())
    assert isinstance(ae.standardize, Standardize)
