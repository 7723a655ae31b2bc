"""A small convolutional autoencoder: the reconstruction baseline for anomaly detection (the error:
:mod:`viclab.losses.reconstruction`)."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.core.errors import ViclabError
from viclab.models.small import init_convs


class ConvAutoencoder(nn.Module):
    """Conv encoder -> linear bottleneck -> mirrored transposed-conv decoder -> sigmoid (or linear).

    Args:
        size: side ``S`` of the square input images, or ``(H, W)``; multiples of ``2**len(widths)``.
        widths: channels after each stride-2 encoder conv (the decoder walks them back).
        latent: bottleneck dimension, also the representation returned by :meth:`encode`.
        channels: input (and output) channels.
        output: ``"sigmoid"`` (inputs in ``[0, 1]``) or ``"linear"`` (standardised inputs).

    Raises:
        ViclabError: if a side is not a positive multiple of ``2**len(widths)``.
    """

    def __init__(self, size: int | tuple[int, int] = 32, widths: tuple[int, ...] = (32, 64, 128), latent: int = 64,
                 channels: int = 3, output: str = "sigmoid") -> None:
        super().__init__()
        widths = tuple(widths)
        if not widths or latent < 1:
            raise ViclabError(f"autoencoder needs at least one width and latent >= 1, got widths={widths}, "
                              f"latent={latent}; pass e.g. widths=(32, 64, 128), latent=64")
        if output not in ("sigmoid", "linear"):
            raise ValueError(f"output={output!r}: use 'sigmoid' or 'linear'")
        factor = 2 ** len(widths)
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        for side in (height, width):
            if side < factor or side % factor:
                raise ViclabError(f"autoencoder image size {side} is not a multiple of 2**len(widths) = {factor}; "
                                  f"resize the images to a multiple of {factor} or use fewer widths")
        self.size, self.widths, self.latent = size, widths, latent
        self.side = (height // factor, width // factor)
        flat = widths[-1] * self.side[0] * self.side[1]

        # Each 3x3 stride-2 conv halves each side; each 4x4 stride-2 transposed conv doubles it exactly.
        down = [m for cin, cout in zip((channels, *widths[:-1]), widths) for m in
                (nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))]
        self.encoder = nn.Sequential(*down, nn.Flatten(1), nn.Linear(flat, latent))
        up: list[nn.Module] = [nn.Linear(latent, flat), nn.ReLU(inplace=True),
                               nn.Unflatten(1, (widths[-1], *self.side))]
        rev = widths[::-1]
        up += [m for cin, cout in zip(rev[:-1], rev[1:]) for m in
               (nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True))]
        up += [nn.ConvTranspose2d(widths[0], channels, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, *([nn.Sigmoid()] if output == "sigmoid" else []))
        self.feature_dim = latent
        init_convs(self)

    def encode(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` images -> ``(B, latent)`` bottleneck codes."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """``(B, latent)`` codes -> ``(B, 3, S, S)`` reconstructions in ``[0, 1]``."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S)`` images -> ``(B, 3, S, S)`` reconstructions in ``[0, 1]``."""
        return self.decode(self.encode(x))

    #: The probing seam: ``(B, 3, S, S)`` -> ``(B, latent)``, same as :meth:`encode`.
    forward_features = encode


def build_autoencoder(size: int = 32, widths: tuple[int, ...] = (32, 64, 128),
                      latent: int = 64) -> tuple[ConvAutoencoder, int]:
    """Build a :class:`ConvAutoencoder`; returns ``(module, latent)``."""
    return ConvAutoencoder(size=size, widths=widths, latent=latent), latent
