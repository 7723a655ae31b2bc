"""ConvAutoencoder: shapes, output range, the size check, and that it learns to flag anomalies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from viclab.core.errors import ViclabError
from viclab.losses.reconstruction import reconstruction_errors, reconstruction_loss
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder


@pytest.mark.parametrize("size", [32, 64])
def test_shapes(size):
    torch.manual_seed(0)
    net, dim = build_autoencoder(size=size, widths=(32, 64, 128), latent=64)
    assert isinstance(net, ConvAutoencoder) and dim == 64 == net.feature_dim
    x = torch.rand(5, 3, size, size)
    z = net.encode(x)
    assert z.shape == (5, 64)
    assert net.decode(z).shape == (5, 3, size, size)
    assert net(x).shape == (5, 3, size, size)
    torch.testing.assert_close(net.forward_features(x), net.encode(x))


def test_custom_widths_and_latent():
    net, dim = build_autoencoder(size=16, widths=(8, 16), latent=5)
    assert dim == 5
    x = torch.rand(2, 3, 16, 16)
    assert net.encode(x).shape == (2, 5) and net(x).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("train", [True, False])
def test_output_in_unit_interval(train):
    torch.manual_seed(0)
    net = ConvAutoencoder().train(train)
    x = torch.cat([torch.rand(4, 3, 32, 32), torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32)])
    with torch.no_grad():
        out = net(x)
        dec = net.decode(100 * torch.randn(3, 64))  # far outside the codes seen: sigmoid still bounds it
    for t in (out, dec):
        assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1


@pytest.mark.parametrize("size, widths", [(36, (32, 64, 128)), (4, (32, 64, 128)), (30, (8, 16))])
def test_size_not_divisible_raises(size, widths):
    with pytest.raises(ViclabError, match=r"multiple of") as err:
        ConvAutoencoder(size=size, widths=widths)
    assert "\n" not in str(err.value)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = ConvAutoencoder()
    x = torch.rand(4, 3, 32, 32)
    reconstruction_loss(x, net(x)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def smooth_images(n: int, g: torch.Generator, size: int = 32) -> torch.Tensor:
    """``(n, 3, size, size)`` low-frequency "normal" images: 4x4 random colours upsampled bicubically."""
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def paste_noise_patch(x: torch.Tensor, g: torch.Generator, k: int = 10) -> torch.Tensor:
    """Copy of ``x`` with a ``k x k`` uniform-noise square at a random place in each image."""
    x = x.clone()
    side = x.shape[-1]
    for i in range(len(x)):
        r, c = torch.randint(0, side - k + 1, (2,), generator=g).tolist()
        x[i, :, r:r + k, c:c + k] = torch.rand(x.shape[1], k, k, generator=g)
    return x


def pair_auroc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(score(anomalous) > score(normal)), ties counting 1/2, by counting every pair."""
    wins = 0.0
    for p in pos.tolist():
        for q in neg.tolist():
            wins += 1.0 if p > q else 0.5 if p == q else 0.0
    return wins / (len(pos) * len(neg))


def test_trained_autoencoder_flags_noise_patches():
    """Trained on smooth images, the AE reconstructs held-out smooth images better than ones with a noise patch.

    Untrained, the same net scores the two sets about alike (the patch alone does not raise the error),
    so the >= 0.9 AUROC comes from what training taught it.
    """
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train = smooth_images(256, g)
    held = smooth_images(128, g)
    clean, anomalous = held[:64], paste_noise_patch(held[64:], g)
    net, _ = build_autoencoder(size=32)

    def scores() -> tuple[torch.Tensor, torch.Tensor]:
        net.eval()
        with torch.no_grad():
            return reconstruction_errors(anomalous, net(anomalous)), reconstruction_errors(clean, net(clean))

    assert pair_auroc(*scores()) < 0.75  # untrained: near chance

    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    first = None
    for _ in range(200):
        batch = train[torch.randint(0, len(train), (64,), generator=g)]
        loss = reconstruction_loss(batch, net(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first / 10

    anomalous_err, clean_err = scores()
    assert anomalous_err.mean() > clean_err.mean()
    assert pair_auroc(anomalous_err, clean_err) >= 0.9
