"""Networks over ``(B, 1, n_mels, frames)`` log-mel spectrograms in dB (spec §4): a CNN encoder and autoencoders.

Those that need them standardised carry a :class:`Standardize` layer whose training-set mean and std are
buffers: they travel with the weights, so a saved encoder scores new clips exactly as it was trained."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from viclab.models.autoencoder import ConvAutoencoder
from viclab.models.projector import dense_layers
from viclab.models.registry import register
from viclab.models.small import SmallCNN


class Standardize(nn.Module):
    """``(x - mean) / std`` with the training set's mean and std; unfitted (mean 0, std 1) the identity."""

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
    """Standardise, then :class:`~viclab.models.small.SmallCNN` of ``widths`` on one input channel (its global
    average pooling takes any number of mel bands and frames)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.standardize = Standardize()
        self.body = SmallCNN(widths, in_channels=1)
        self.feature_dim = self.body.feature_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 1, n_mels, frames)`` dB -> ``(B, widths[-1])``."""
        return self.body(self.standardize(x))

    forward = forward_features


@register(channels=1, size=None, mean=None, std=None)  # log-mel spectrograms (spec §4), standardised inside
def spec_cnn() -> tuple[nn.Module, int]:
    """The spectrogram CNN: widths 32-64-128-256, 256-d features."""
    net = SpecCNN()
    return net, net.feature_dim


class SpecClassifier(nn.Module):
    """:class:`SpecCNN` then a linear layer: ``(B, 1, n_mels, frames)`` dB -> ``(B, len(classes))`` logits, e.g. of
    the machine IDs (``classes``: their names, kept with the weights)."""

    def __init__(self, classes: tuple[str, ...], widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.encoder = SpecCNN(widths)
        self.head = nn.Linear(self.encoder.feature_dim, len(classes))
        self.feature_dim = self.encoder.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def stack_frames(logmel: Tensor, context: int = 5) -> Tensor:
    """``context`` consecutive frames of ``(B, 1, n_mels, T)`` or ``(B, n_mels, T)`` spectrograms side by side, as
    the DCASE 2020 baseline feeds its autoencoder: ``(B, T - context + 1, context * n_mels)``, vector ``t`` the
    frames ``t .. t + context - 1``, frame-major (``n_mels`` values of frame ``t``, then of ``t + 1``, ...)."""
    x = logmel.squeeze(1) if logmel.dim() == 4 else logmel
    if x.shape[-1] < context:
        raise ValueError(f"a spectrogram of {x.shape[-1]} frames has no window of {context} frames")
    windows = x.unfold(-1, context, 1)  # (B, n_mels, T - context + 1, context)
    return windows.permute(0, 2, 3, 1).reshape(x.shape[0], -1, context * x.shape[1])


class DenseAutoencoder(nn.Module):
    """The DCASE 2020 Task 2 baseline (spec §5): ``inputs -> hidden x depth -> bottleneck -> hidden x depth ->
    inputs`` (``640 -> 128 x4 -> 8 -> 128 x4 -> 640``; 640 = 5 frames x 128 mels), every hidden layer Dense +
    BatchNorm + ReLU, the output linear."""

    def __init__(self, inputs: int = 640, hidden: int = 128, bottleneck: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*dense_layers([inputs, *[hidden] * depth, bottleneck]))
        self.decoder = nn.Sequential(*dense_layers([bottleneck, *[hidden] * depth]), nn.Linear(hidden, inputs))
        self.inputs, self.feature_dim = inputs, bottleneck

    def forward(self, x: Tensor) -> Tensor:
        """``(..., inputs)`` -> ``(..., inputs)`` reconstructions."""
        shape = x.shape
        return self.decoder(self.encoder(x.reshape(-1, shape[-1]))).reshape(shape)


class SpecAutoencoder(nn.Module):
    """A :class:`~viclab.models.autoencoder.ConvAutoencoder` over spectrograms of ``n_mels`` (a multiple of
    ``2 ** len(widths)``) x ``frames``: standardise, pad the frames at the end (edge values) to a multiple of
    ``2 ** len(widths)``, reconstruct with a linear output, crop and undo the standardisation (all in dB)."""

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
