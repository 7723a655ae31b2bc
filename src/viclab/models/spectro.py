"""Networks over log-mel spectrograms (spec §4): a CNN encoder and the DCASE 2020 baseline autoencoder.

Spectrograms come in as ``(B, 1, n_mels, frames)`` in dB. Networks that need them standardised
carry a :class:`Standardize` layer whose mean and standard deviation are those of their training
set, as buffers: they travel with the weights, so a saved encoder scores new clips exactly as it
was trained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from viclab.models.autoencoder import ConvAutoencoder
from viclab.models.registry import register
from viclab.models.small import SmallCNN


class Standardize(nn.Module):
    """``(x - mean) / std`` with one mean and one standard deviation: the training set's.

    Unfitted it is the identity (mean 0, std 1); :func:`fit_standardizers` sets it once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: Tensor, chunk: int = 4096) -> None:
        """Set mean and std (population) from ``x`` of any shape, accumulated in float64."""
        n, total, squares = 0, torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for part in x.split(chunk):
            p = part.double()
            n, total, squares = n + p.numel(), total + p.sum().cpu(), squares + p.pow(2).sum().cpu()
        mean = total / n
        std = (squares / n - mean * mean).clamp_min(0).sqrt()
        self.mean.fill_(float(mean))
        self.std.fill_(max(float(std), 1e-6))
        self.fitted.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def fit_standardizers(module: nn.Module, inputs: Tensor) -> int:
    """Fit every unfitted :class:`Standardize` in ``module`` on ``inputs``; returns how many."""
    layers = [m for m in module.modules() if isinstance(m, Standardize) and not bool(m.fitted)]
    for m in layers:
        m.fit(inputs)
    return len(layers)


class SpecCNN(nn.Module):
    """Standardise, then :class:`~viclab.models.small.SmallCNN` on one input channel (its global average
    pooling takes any number of mel bands and frames).

    Args:
        widths: stem width followed by one width per stage; the last is the feature dim.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.standardize = Standardize()
        self.body = SmallCNN(widths, in_channels=1)
        self.feature_dim = self.body.feature_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 1, n_mels, frames)`` dB -> ``(B, widths[-1])``."""
        return self.body(self.standardize(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


@register(channels=1, size=None, mean=None, std=None)  # log-mel spectrograms (spec §4), standardised inside
def spec_cnn() -> tuple[nn.Module, int]:
    """The spectrogram CNN: widths 32-64-128-256, 256-d features."""
    net = SpecCNN()
    return net, net.feature_dim


def stack_frames(logmel: Tensor, context: int = 5) -> Tensor:
    """Consecutive frames side by side, as the DCASE 2020 baseline feeds its autoencoder.

    Args:
        logmel: ``(B, 1, n_mels, T)`` or ``(B, n_mels, T)``.
        context: frames per vector.

    Returns:
        ``(B, T - context + 1, context * n_mels)``: vector ``t`` is frames ``t .. t + context - 1``,
        frame-major (``n_mels`` values of frame ``t``, then of ``t + 1``, ...), the baseline's order.
    """
    x = logmel.squeeze(1) if logmel.dim() == 4 else logmel
    if x.shape[-1] < context:
        raise ValueError(f"a spectrogram of {x.shape[-1]} frames has no window of {context} frames")
    windows = x.unfold(-1, context, 1)  # (B, n_mels, T - context + 1, context)
    return windows.permute(0, 2, 3, 1).reshape(x.shape[0], -1, context * x.shape[1])


def _dense(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]


class DenseAutoencoder(nn.Module):
    """The DCASE 2020 Task 2 baseline: ``640 -> 128 x4 -> 8 -> 128 x4 -> 640``, every hidden layer
    Dense + BatchNorm + ReLU, the output linear (spec §5).

    Args:
        inputs: vector width (``context * n_mels``, 5 x 128 = 640 in the baseline).
        hidden: hidden width (128).
        bottleneck: code width (8).
        depth: hidden layers on each side of the code (4).
    """

    def __init__(self, inputs: int = 640, hidden: int = 128, bottleneck: int = 8, depth: int = 4) -> None:
        super().__init__()
        widths = [inputs] + [hidden] * depth
        enc: list[nn.Module] = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            enc += _dense(cin, cout)
        self.encoder = nn.Sequential(*enc, *_dense(hidden, bottleneck))
        dec: list[nn.Module] = _dense(bottleneck, hidden)
        for _ in range(depth - 1):
            dec += _dense(hidden, hidden)
        self.decoder = nn.Sequential(*dec, nn.Linear(hidden, inputs))
        self.inputs, self.feature_dim = inputs, bottleneck

    def forward(self, x: Tensor) -> Tensor:
        """``(..., inputs)`` -> ``(..., inputs)`` reconstructions."""
        shape = x.shape
        return self.decoder(self.encoder(x.reshape(-1, shape[-1]))).reshape(shape)


class SpecAutoencoder(nn.Module):
    """A :class:`~viclab.models.autoencoder.ConvAutoencoder` over log-mel spectrograms.

    Standardises its input (the training set's mean and std), pads the frames at the end (edge
    values) to a multiple of ``2 ** len(widths)``, reconstructs with a linear output, crops and
    undoes the standardisation: input and reconstruction are both in dB.

    Args:
        n_mels: mel bands, a multiple of ``2 ** len(widths)``.
        frames: frames of every spectrogram it sees.
        widths, latent: of the convolutional autoencoder.
    """

    def __init__(self, n_mels: int, frames: int, widths: tuple[int, ...] = (32, 64, 128), latent: int = 64) -> None:
        super().__init__()
        factor = 2 ** len(widths)
        self.frames, self.padded = frames, -(-frames // factor) * factor
        self.standardize = Standardize()
        self.net = ConvAutoencoder((n_mels, self.padded), widths, latent, channels=1, output="linear")
        self.latent = self.feature_dim = latent

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 1, n_mels, frames)`` dB -> the same shape, reconstructed, in dB."""
        z = self.standardize(x)
        z = torch.nn.functional.pad(z, (0, self.padded - self.frames, 0, 0), mode="replicate")
        return self.net(z)[..., :self.frames] * self.standardize.std + self.standardize.mean
