"""The detectors, registered by name: a frozen network (an encoder, a whole VICReg model, or an autoencoder)
plus the normal reference statistics it scores against (higher = more anomalous). Inputs are
``(M, 3, S, S)`` uint8 images or ``(M, 1, n_mels, T)`` float log-mel spectrograms (``dcase_ae``: only those).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from viclab.config import Config, DetectConfig
from viclab.config.detect import TERM_SCORES
from viclab.core.context import QUIET, Context
from viclab.core.runtime import Runtime
from viclab.data.types import unit_float
from viclab.detect.scores import (
    NormalStats,
    fit_gaussian,
    knn_scores,
    mahalanobis_scores,
    term_contributions,
    view_invariance,
)
from viclab.losses.reconstruction import reconstruction_errors
from viclab.models import DenseAutoencoder, SpecAutoencoder, fit_standardizers, input_modality, stack_frames
from viclab.represent.encode import encode
from viclab.views import view_maker


def _batches(images: Tensor, size: int, ctx: Context, desc: str):
    from tqdm import tqdm

    for start in tqdm(range(0, len(images), size), desc=desc, disable=not ctx.progress, leave=False,
                      dynamic_ncols=True):
        yield images[start:start + size]


def _channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class Detector:
    """A fitted detector: ``network`` and ``reference`` tensors, scored on ``rt``.

    Attributes:
        cfg: the detector's config.
        network: the frozen network (eval mode).
        recipe: the config the network was trained with: its views (``augment`` for images,
            ``spec_views`` for spectrograms), normalisation and VICReg coefficients (``loss``, with
            which the terms are scored).
        reference: the normal statistics (name -> tensor), saved with the detector.
        rt: where and how precisely it scores.
    """

    name: ClassVar[str]
    network_kind: ClassVar[str]  # "encoder", "vicreg", "autoencoder" or "dcase"

    def __init__(self, cfg: DetectConfig, network: nn.Module | None, rt: Runtime,
                 reference: dict[str, Tensor] | None = None, recipe: Config | None = None) -> None:
        self.cfg, self.rt = cfg, rt
        self.recipe = recipe or cfg.recipe
        self.augment, self.loss = self.recipe.augment, self.recipe.loss
        # None: a detector given representations (``viclab anomaly`` on a stored table) needs no network.
        self.network = None if network is None else network.to(rt.device, memory_format=torch.channels_last).eval()
        self.reference = reference or {}

    @property
    def modality(self) -> str:
        """What the network takes (:data:`viclab.data.MODALITIES`), a fact of the network: a reconstructor's
        class (built for the normal data's shape), else the backbone of the recipe it was trained or built with.
        Fitting checked it against the normal data (:func:`~viclab.models.check_inputs`)."""
        if self.network_kind in ("autoencoder", "dcase"):
            return "spectrogram" if isinstance(self.network, (SpecAutoencoder, DenseAutoencoder)) else "image"
        return input_modality(self.recipe.model.backbone)

    def prepare(self, normal: Tensor) -> None:
        """Before the reference is computed: a given encoder that standardises spectrograms but was
        never trained on them (``random:spec_cnn``) takes the normal clips' statistics."""
        fit_standardizers(self.network, normal.to(self.rt.device))

    def features(self, images: Tensor, ctx: Context = QUIET) -> Tensor:
        """``(M, 3, S, S)`` uint8 (or spectrograms) -> ``(M, D)`` float32 encoder representations (normalise
        only): :func:`~viclab.represent.encode.encode`, in ``cfg.batch_size`` batches on :attr:`rt`."""
        encoder = self.network.encoder if self.network_kind == "vicreg" else self.network
        return encode(encoder, images, self.augment, self.cfg.batch_size, replace(ctx, runtime=self.rt),
                      f"{self.name}: encoding", modality=self.modality)

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        """Compute :attr:`reference` from ``(N, 3, S, S)`` uint8 normal images."""

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        """Per-image quantities of ``(M, 3, S, S)`` uint8 images; ``"score"`` ranks them."""
        raise NotImplementedError


class KnnDetector(Detector):
    """Mean distance to the ``k`` nearest normal representations (spec A1)."""

    name, network_kind = "knn", "encoder"

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        self.fit_features(self.features(normal, ctx))

    def fit_features(self, normal: Tensor) -> None:
        """The reference from ``(N, D)`` normal representations already computed."""
        self.reference = {"features": normal}

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        return self.score_features(self.features(images, ctx).numpy())

    def score_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of ``(M, D)`` representations already computed."""
        ref = self.reference["features"].numpy()
        return {"score": knn_scores(ref, features, self.cfg.k, self.cfg.cosine)}


class MahalanobisDetector(Detector):
    """Distance to the normal mean under the shrunk normal covariance."""

    name, network_kind = "mahalanobis", "encoder"

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        mean, precision, used = fit_gaussian(self.features(normal, ctx).numpy(), self.cfg.shrinkage)
        self.reference = {"mean": torch.from_numpy(mean), "precision": torch.from_numpy(precision),
                          "shrinkage": torch.tensor(used, dtype=torch.float64)}

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        ref = {k: v.numpy() for k, v in self.reference.items()}
        return {"score": mahalanobis_scores(self.features(images, ctx).numpy(), ref["mean"], ref["precision"])}


class VICRegTermsDetector(Detector):
    """The frozen VICReg model's terms per image: invariance between ``views`` augmented views, and
    the image's contribution to the normal projections' variance and covariance terms."""

    name, network_kind = "vicreg_terms", "vicreg"

    def projections(self, images: Tensor, ctx: Context = QUIET) -> Tensor:
        """``(M, d)`` float64 projections of the un-augmented images (normalise only; through float32, which
        holds every fp32 or bf16 output exactly)."""
        return encode(self.network, images, self.augment, self.cfg.batch_size, replace(ctx, runtime=self.rt),
                      "vicreg_terms: projecting", modality=self.modality).double()

    @torch.no_grad()
    def view_projections(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """``(K, B, d)`` projections of ``K = cfg.views`` augmented views of ``(B, 3, S, S)`` uint8 ``x``."""
        k = self.cfg.views
        views = _channels_last(view_maker(self.modality, self.recipe)(x.repeat(k, 1, 1, 1), gen))
        with self.rt.autocast():
            z = self.network(views).float()
        return z.view(k, len(x), -1)

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        self.reference = NormalStats(self.projections(normal, ctx)).tensors()

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        loss = self.loss
        gen = torch.Generator(device=self.rt.device).manual_seed(self.cfg.seed)
        inv = []
        for x in _batches(images, max(1, self.cfg.batch_size // self.cfg.views), ctx,
                          f"vicreg_terms: {self.cfg.views} views"):
            inv.append(view_invariance(self.view_projections(x.to(self.rt.device), gen)).cpu())
        invariance = torch.cat(inv)
        var, cov = term_contributions(self.projections(images), NormalStats.from_tensors(self.reference),
                                      loss.gamma, loss.eps, loss.variant)
        # The image's share of the loss, its weighted terms on one set of projections (training sums the
        # variance and covariance of both views' sets). The variance contribution is usually negative for an
        # outlier (it widens the spread), so as a ranking score it flags typical images first.
        total = loss.inv_weight * invariance + loss.var_weight * var + loss.cov_weight * cov
        out = dict(zip(TERM_SCORES, (invariance, var, cov, total)))
        return {"score": out[self.cfg.score].numpy(), **{k: v.numpy() for k, v in out.items()}}


class AutoencoderDetector(Detector):
    """Per-image reconstruction error of an autoencoder trained on normal images (spec §4)."""

    name, network_kind = "autoencoder", "autoencoder"
    batch_share = 1  # inputs per forward pass: cfg.batch_size // batch_share

    @torch.no_grad()
    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        out = []
        for x in _batches(images, max(1, self.cfg.batch_size // self.batch_share), ctx,
                          f"{self.name}: reconstructing"):
            out.append(self.errors(x.to(self.rt.device)).cpu())
        return {"score": torch.cat(out).numpy()}

    def errors(self, x: Tensor) -> Tensor:
        """``(B,)`` reconstruction errors of a batch ``x`` on the device."""
        x = _channels_last(unit_float(x, self.modality))
        with self.rt.autocast():
            return reconstruction_errors(x, self.network(x))


class DcaseDetector(AutoencoderDetector):
    """The DCASE 2020 Task 2 baseline (spec §5): the mean, over a clip's windows of ``dcase.context``
    frames, of the dense autoencoder's squared reconstruction error."""

    name, network_kind, batch_share = "dcase_ae", "dcase", 50  # a clip holds many windows

    def errors(self, x: Tensor) -> Tensor:
        v = stack_frames(x, self.cfg.dcase.context)  # (B, windows, context * n_mels)
        with self.rt.autocast():
            err = (self.network(v).float() - v).pow(2).mean(-1)
        return err.mean(-1)


DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (KnnDetector, MahalanobisDetector, VICRegTermsDetector, AutoencoderDetector,
                              DcaseDetector)
}
