"""The detectors, registered by name: a frozen network (an encoder, a whole VICReg model, or an autoencoder)
plus the normal reference statistics it scores against (higher = more anomalous). Inputs are
``(M, 3, S, S)`` uint8 images or ``(M, 1, n_mels, T)`` float log-mel spectrograms (``dcase_ae``: only those).
Their scores as pure functions of representations, among them spec §1's VICReg terms per image (exact, float64).
Also the reconstruction baselines' networks and their training on the one engine: the convolutional autoencoder
(images or spectrograms) and the DCASE 2020 baseline's dense autoencoder over stacked log-mel frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from viclab.config import AutoencoderConfig, Config, DcaseConfig, DetectConfig, MachineIdConfig
from viclab.config.detect import TERM_SCORES
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError
from viclab.core.runtime import Runtime
from viclab.data import ImageData
from viclab.data.types import unit_float
from viclab.engine import Objective, RunFolder, fit
from viclab.engine.loop import read_checkpoint
from viclab.losses.reconstruction import reconstruction_errors, reconstruction_loss
from viclab.models import (
    DenseAutoencoder,
    SpecAutoencoder,
    SpecClassifier,
    fit_standardizers,
    input_modality,
    stack_frames,
)
from viclab.models.autoencoder import build_autoencoder
from viclab.represent.encode import encode
from viclab.represent.layers import StagePool, WithStages
from viclab.represent.neighbors import knn_anomaly_scores
from viclab.views import view_maker


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero): L2 between them ranks as cosine distance."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float32)


def knn_scores(reference: np.ndarray, queries: np.ndarray, k: int, cosine: bool = False) -> np.ndarray:
    """``(M,)`` float32 mean distance of ``(M, D)`` ``queries`` to their ``k <= N`` nearest of the ``(N, D)`` normal
    ``reference`` (spec A1); ``cosine``: between unit vectors (L2 between them is ``sqrt(2 - 2 cos)``)."""
    if k > len(reference):
        raise ViclabError(f"detect.k={k} is larger than the {len(reference)} normal images fitted on; use "
                          f"detect.k={len(reference)} or fewer")
    if cosine:
        reference, queries = unit_rows(reference), unit_rows(queries)
    return knn_anomaly_scores(reference, queries, k)


def mean_shifted(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit rows of ``(M, D)`` ``x``, centred on the normal ``centre`` (the mean of the normal unit rows) and
    scaled to unit length again: L2 between them ranks as cosine distance around the normal mean (Reiss & Hoshen,
    "Mean-Shifted Contrastive Loss for Anomaly Detection", 2023)."""
    return unit_rows(unit_rows(x) - centre)


def fit_gaussian(x: np.ndarray, shrinkage: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean (D,), precision (D, D), shrinkage used)``, float64, of ``(N, D)`` representations under a shrunk
    covariance: Ledoit-Wolf's for ``shrinkage=None``, else sklearn's ``ShrunkCovariance``,
    ``(1 - s) S + s * trace(S) / D * I`` with ``S`` the maximum-likelihood covariance."""
    from sklearn.covariance import LedoitWolf, ShrunkCovariance

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ViclabError(f"a Mahalanobis detector needs at least 2 normal images, got {len(x)}")
    est = (LedoitWolf() if shrinkage is None else ShrunkCovariance(shrinkage=shrinkage)).fit(x)
    used = float(est.shrinkage_ if shrinkage is None else shrinkage)
    cov = est.covariance_
    eig = np.linalg.eigvalsh(cov)
    if eig[0] <= 1e-12 * max(eig[-1], 1e-300):
        # inv() rarely raises on a numerically singular matrix: it returns entries near 1e15 instead.
        raise ViclabError(f"the normal representations' covariance is singular ({len(x)} images in {x.shape[1]} "
                          "dimensions); use a shrinkage above 0, e.g. detect.shrinkage=0.1, or more normal images")
    try:
        precision = np.linalg.inv(cov)
    except np.linalg.LinAlgError:
        raise ViclabError("the normal representations' covariance is singular; use a shrinkage above 0, e.g. "
                          "detect.shrinkage=0.1") from None
    return est.location_, precision, used


def mahalanobis_scores(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``sqrt((x - mean)^T P (x - mean))`` per row of ``(M, D)`` ``x``; ``(M,)`` float64."""
    d = np.asarray(x, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("md,de,me->m", d, precision, d), 0.0))


def view_invariance(z: Tensor) -> Tensor:
    """``(M,)`` invariance of ``(K, M, d)`` projections of ``K`` views of ``M`` images: the mean over the ``K(K-1)/2``
    view pairs of ``||z_a - z_b||^2 / d`` (spec §1's term), as ``2K/(K-1) * mean_a ||z_a - z_mean||^2 / d``."""
    k, _, d = z.shape
    z = z.double()
    return (z - z.mean(0)).pow(2).sum((0, 2)) / (k * d) * (2 * k / (k - 1))


class NormalStats:
    """The count, mean and scatter (float64) of ``(N >= 2, d)`` normal projections ``z``: what an image is added to."""

    def __init__(self, z: Tensor | None = None, *, n: int = 0, mean: Tensor | None = None,
                 scatter: Tensor | None = None) -> None:
        if z is not None:
            z = z.double()
            n, mean = len(z), z.mean(0)
            zc = z - mean
            scatter = zc.T @ zc
        self.n, self.mean, self.scatter = n, mean, scatter

    def tensors(self) -> dict[str, Tensor]:
        return {"n": torch.tensor(self.n), "mean": self.mean, "scatter": self.scatter}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> NormalStats:
        return cls(n=int(t["n"]), mean=t["mean"].double(), scatter=t["scatter"].double())


def _variance_term(var: Tensor, gamma: float, eps: float, variant: str) -> Tensor:
    """spec §1's hinge on per-dimension variances ``var (..., d)``."""
    sigma = var.add(eps).sqrt() if variant == "official" else var.clamp_min(0).sqrt().add(eps)
    return torch.relu(gamma - sigma).mean(-1)


def term_contributions(z: Tensor, stats: NormalStats, gamma: float = 1.0, eps: float = 1e-4,
                       variant: str = "spec") -> tuple[Tensor, Tensor]:
    """Each of ``(M, d)`` projections' contribution to the variance and the covariance term of the normal ones:
    ``(variance (M,), covariance (M,))``, ``N * (T(normal + x) - T(normal))`` per image, float64.

    Adding ``x`` to ``N`` points of mean ``m`` and scatter ``S`` gives ``N + 1`` points of scatter
    ``S + N/(N+1) (x - m)(x - m)^T`` (unbiased covariance: divided by ``N``), so both terms of the
    enlarged set have closed forms; ``||C + a u u^T||_F^2 = ||C||^2 + 2a u^T C u + a^2 ||u||^4``.
    """
    n, mean, scatter = stats.n, stats.mean, stats.scatter
    d = scatter.shape[0]
    u = z.double() - mean
    a = n / (n + 1)
    cov0 = scatter / (n - 1)
    diag0 = scatter.diagonal()
    var_before = _variance_term(diag0 / (n - 1), gamma, eps, variant)
    var_after = _variance_term((diag0 + a * u.pow(2)) / n, gamma, eps, variant)
    # Off-diagonal sum of squares of C' = (S + a u u^T) / n.
    frob = (scatter.pow(2).sum() + 2 * a * ((u @ scatter) * u).sum(1) + a * a * u.pow(2).sum(1).pow(2)) / n ** 2
    diag_sq = (diag0 + a * u.pow(2)).pow(2).sum(1) / n ** 2
    cov_after = (frob - diag_sq) / d
    cov_before = (cov0.pow(2).sum() - cov0.diagonal().pow(2).sum()) / d
    return n * (var_after - var_before), n * (cov_after - cov_before)


def _batches(images: Tensor, size: int, ctx: Context, desc: str):
    from tqdm import tqdm

    for start in tqdm(range(0, len(images), size), desc=desc, disable=not ctx.progress, leave=False,
                      dynamic_ncols=True):
        yield images[start:start + size]


def channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)


class Detector:
    """A fitted detector: ``network`` and ``reference`` tensors, scored on ``rt``.

    Attributes:
        cfg: the detector's config.
        network: the frozen network (eval mode).
        recipe: the config the network was trained with: its views, normalisation and VICReg coefficients.
        reference: the normal statistics (name -> tensor), saved with the detector.
        rt: where and how precisely it scores.
    """

    name: ClassVar[str]
    network_kind: ClassVar[str]  # "encoder", "vicreg", "autoencoder" or "dcase"
    quantities: ClassVar[tuple[str, ...]] = ("score",)  # what score() returns, each reported on its own
    reads_layers: ClassVar[bool] = False  # scores features() of detect.layers (else the encoder's output)

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
        """The network's input (:data:`viclab.data.MODALITIES`): a reconstructor's class, else its recipe's backbone."""
        if self.network_kind in ("autoencoder", "dcase", "machine_id"):
            return "spectrogram" if isinstance(self.network, (SpecAutoencoder, DenseAutoencoder, SpecClassifier)) \
                else "image"
        return input_modality(self.recipe.model.backbone)

    def features(self, images: Tensor, ctx: Context = QUIET) -> Tensor:
        """``(M, 3, S, S)`` uint8 (or spectrograms) -> ``(M, D)`` float32 encoder representations (normalise
        only), in ``cfg.batch_size`` batches on :attr:`rt`."""
        encoder = self.network.encoder if self.network_kind == "vicreg" else self.network
        if self.cfg.layers == "all" and self.reads_layers:
            encoder = StagePool(encoder)
        return encode(encoder, images, self.augment, self.cfg.batch_size, replace(ctx, runtime=self.rt),
                      f"{self.name}: encoding", modality=self.modality)

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        """Compute :attr:`reference` from ``(N, 3, S, S)`` uint8 normal images."""

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        """Per-image quantities of ``(M, 3, S, S)`` uint8 images; ``"score"`` ranks them."""
        raise NotImplementedError

    def score_data(self, data: ImageData, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        """:meth:`score` of ``data``'s items; a detector that reads their attributes (machine IDs) overrides it."""
        return self.score(data.images, ctx)


class KnnDetector(Detector):
    """Mean distance to the ``k`` nearest normal representations (spec A1)."""

    name, network_kind, reads_layers = "knn", "encoder", True

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        self.fit_features(self.features(normal, ctx))

    def fit_features(self, normal: Tensor) -> None:
        """The reference from ``(N, D)`` normal representations already computed (``detect.mean_shift``: centred
        unit vectors, and their centre)."""
        if not self.cfg.mean_shift:
            self.reference = {"features": normal}
            return
        centre = unit_rows(normal.numpy()).mean(0)
        self.reference = {"features": torch.from_numpy(mean_shifted(normal.numpy(), centre)),
                          "centre": torch.from_numpy(centre)}

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        return self.score_features(self.features(images, ctx).numpy())

    def score_features(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of ``(M, D)`` representations already computed."""
        ref = self.reference["features"].numpy()
        if "centre" in self.reference:
            return {"score": knn_scores(ref, mean_shifted(features, self.reference["centre"].numpy()), self.cfg.k)}
        return {"score": knn_scores(ref, features, self.cfg.k, self.cfg.cosine)}


class MahalanobisDetector(Detector):
    """Distance to the normal mean under the shrunk normal covariance."""

    name, network_kind, reads_layers = "mahalanobis", "encoder", True

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

    name, network_kind, quantities = "vicreg_terms", "vicreg", TERM_SCORES

    def projections(self, images: Tensor, ctx: Context = QUIET) -> Tensor:
        """``(M, d)`` float64 projections of the un-augmented images (normalise only; through float32, which
        holds every fp32 or bf16 output exactly)."""
        return encode(self.network, images, self.augment, self.cfg.batch_size, replace(ctx, runtime=self.rt),
                      "vicreg_terms: projecting", modality=self.modality).double()

    @torch.no_grad()
    def view_projections(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """``(K, B, d)`` projections of ``K = cfg.views`` augmented views of ``(B, 3, S, S)`` uint8 ``x``."""
        k = self.cfg.views
        views = channels_last(view_maker(self.modality, self.recipe)(x.repeat(k, 1, 1, 1), gen))
        with self.rt.autocast():
            z = self.network(views).float()
        return z.view(k, len(x), -1)

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        self.reference = NormalStats(self.projections(normal, ctx)).tensors()

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        loss, views = self.loss, self.cfg.views
        gen = torch.Generator(device=self.rt.device).manual_seed(self.cfg.seed)
        batches = _batches(images, max(1, self.cfg.batch_size // views), ctx, f"vicreg_terms: {views} views")
        invariance = torch.cat([view_invariance(self.view_projections(x.to(self.rt.device), gen)).cpu()
                                for x in batches])
        var, cov = term_contributions(self.projections(images), NormalStats.from_tensors(self.reference),
                                      loss.gamma, loss.eps, loss.variant)
        # The image's share of the loss, its weighted terms on one set of projections (training sums the
        # variance and covariance of both views' sets). The variance contribution is usually negative for an
        # outlier (it widens the spread), so as a ranking score it flags typical images first.
        total = loss.inv_weight * invariance + loss.var_weight * var + loss.cov_weight * cov
        out = dict(zip(TERM_SCORES, (invariance, var, cov, total)))
        return {"score": out[self.cfg.score].numpy(), **{k: v.numpy() for k, v in out.items()}}


def rotated(images: Tensor, quarter_turns: int) -> Tensor:
    """``(M, C, S, S)`` images rotated counter-clockwise by ``quarter_turns`` x 90 degrees."""
    return torch.rot90(images, quarter_turns, (2, 3)) if quarter_turns else images


class ShiftDetector(Detector):
    """An ensemble over shifts (CSI, Tack et al. 2020; Golan & El-Yaniv 2018) on a network trained with a shift
    objective (``train.objective`` ``rotation`` or ``shift``): for each rotation ``r`` of the image, (a) the
    Mahalanobis distance of its features (every stage pooled, :class:`StagePool`) to those of the normal images
    rotated by ``r``, and (b) the shift head's negative log-likelihood of ``r``; each part averaged over the
    rotations and divided by its mean on the normal images, the two summed."""

    name, network_kind, quantities = "shift", "vicreg", ("score", "mahalanobis", "rotation")

    def _shift_head(self) -> nn.Module:
        head = getattr(self.network, "shift_head", None)
        if head is None:
            raise ViclabError("the shift detector needs a model trained with train.objective=shift or rotation (it "
                              "scores with the rotation head); give such a run folder, or none to train one")
        return head

    @torch.no_grad()
    def parts(self, images: Tensor, r: int, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
        """``((M, F) pooled stages, (M,) negative log-likelihood of r)`` of ``images`` rotated ``r`` quarter turns."""
        dim = self.network.feature_dim
        both = encode(WithStages(self.network.encoder), rotated(images, r), self.augment, self.cfg.batch_size,
                      replace(ctx, runtime=self.rt), f"shift: rotation {r}", modality=self.modality)
        logits = self._shift_head().cpu().float()(both[:, :dim])
        return both[:, dim:].numpy(), (-torch.log_softmax(logits, 1)[:, r]).double().numpy()

    def fit_reference(self, normal: Tensor, ctx: Context = QUIET) -> None:
        means, precisions, maha, nll = [], [], 0.0, 0.0
        for r in range(self._shift_head().out_features):
            f, loss = self.parts(normal, r, ctx)
            mean, precision, _ = fit_gaussian(f, self.cfg.shrinkage)
            means.append(mean)
            precisions.append(precision)
            maha, nll = maha + mahalanobis_scores(f, mean, precision), nll + loss
        shifts = len(means)
        scale = [float(np.mean(maha / shifts)), float(np.mean(nll / shifts))]
        self.reference = {"means": torch.from_numpy(np.stack(means)),
                          "precisions": torch.from_numpy(np.stack(precisions)),
                          "scale": torch.tensor(scale, dtype=torch.float64)}

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        means, precisions = self.reference["means"].numpy(), self.reference["precisions"].numpy()
        maha, nll = 0.0, 0.0
        for r in range(len(means)):
            f, loss = self.parts(images, r, ctx)
            maha, nll = maha + mahalanobis_scores(f, means[r], precisions[r]), nll + loss
        maha, nll = maha / len(means), nll / len(means)
        scale = self.reference["scale"].numpy()
        return {"score": maha / scale[0] + nll / scale[1], "mahalanobis": maha, "rotation": nll}


def id_labels(data: ImageData, classes: Sequence[str]) -> Tensor:
    """``(N,)`` int64 index in ``classes`` of each clip's machine ID; refuses clips without one or of an ID the
    detector never learnt."""
    ids = data.machine_ids()
    if ids is None:
        raise ViclabError("the machine_id detector needs each clip's machine ID, which only the MIMII and DCASE "
                          "layouts give (<type>/id_XX/...); use the dcase_ae or autoencoder detector for other sounds")
    if unknown := sorted(set(ids) - set(classes)):
        raise ViclabError(f"clips of machine ID {', '.join(unknown)}, which the machine_id detector never learnt (it "
                          f"knows {', '.join(classes)}); fit it on normal clips of those machines too")
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[i] for i in ids], dtype=torch.long)


def clip_windows(x: Tensor, window: int, hop: int) -> Tensor:
    """``(M, 1, n_mels, T)`` -> ``(M, W, 1, n_mels, window)``: every window of ``window`` frames, ``hop`` apart
    (``W = 1 + (T - window) // hop``; a clip of exactly ``window`` frames is one window)."""
    return x.unfold(-1, window, hop).permute(0, 3, 1, 2, 4)


def random_windows(x: Tensor, window: int, gen: torch.Generator) -> Tensor:
    """One window of ``window`` frames of each ``(B, 1, n_mels, T)`` clip, at a random start."""
    starts = torch.randint(0, x.shape[-1] - window + 1, (len(x),), generator=gen, device=x.device)
    cols = starts[:, None] + torch.arange(window, device=x.device)
    return torch.take_along_dim(x, cols[:, None, None, :].expand(-1, x.shape[1], x.shape[2], -1), dim=3)


class MachineIdDetector(Detector):
    """A clip's mean, over its windows, negative log-probability of its own machine ID under a spectrogram CNN
    trained to name the IDs of the normal clips (:class:`viclab.config.detect.MachineIdConfig`)."""

    name, network_kind = "machine_id", "machine_id"
    batch_share = 32  # clips per forward pass: cfg.batch_size // batch_share (each holds several windows)

    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        raise ViclabError("the machine_id detector scores clips with their machine IDs; give it the clips' data "
                          "(score_data), not their spectrograms alone")

    @torch.no_grad()
    def score_data(self, data: ImageData, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        mc = self.cfg.machine_id
        labels = id_labels(data, self.network.classes)
        out = []
        size = max(1, self.cfg.batch_size // self.batch_share)
        for x, y in zip(_batches(data.images, size, ctx, "machine_id: scoring"), labels.split(size)):
            w = clip_windows(x.to(self.rt.device), mc.window, mc.hop)  # (B, W, 1, n_mels, window)
            with self.rt.autocast():
                logits = self.network(w.flatten(0, 1)).float().view(len(x), w.shape[1], -1)
            nll = -torch.log_softmax(logits, -1).gather(2, y.to(logits.device)[:, None, None].expand(-1, w.shape[1], 1))
            out.append(nll.squeeze(2).mean(1).double().cpu())
        return {"score": torch.cat(out).numpy()}


class AutoencoderDetector(Detector):
    """Per-image reconstruction error of an autoencoder trained on normal images (spec §4)."""

    name, network_kind = "autoencoder", "autoencoder"
    batch_share = 1  # inputs per forward pass: cfg.batch_size // batch_share

    @torch.no_grad()
    def score(self, images: Tensor, ctx: Context = QUIET) -> dict[str, np.ndarray]:
        batches = _batches(images, max(1, self.cfg.batch_size // self.batch_share), ctx, f"{self.name}: reconstructing")
        return {"score": torch.cat([self.errors(x.to(self.rt.device)).cpu() for x in batches]).numpy()}

    def errors(self, x: Tensor) -> Tensor:
        """``(B,)`` reconstruction errors of a batch ``x`` on the device."""
        x = channels_last(unit_float(x, self.modality))
        with self.rt.autocast():
            return reconstruction_errors(x, self.network(x))


class DcaseDetector(AutoencoderDetector):
    """The DCASE 2020 Task 2 baseline (spec §5): the mean, over a clip's windows of ``dcase.context``
    frames, of the dense autoencoder's squared reconstruction error."""

    name, network_kind, batch_share = "dcase_ae", "dcase", 50  # a clip holds many windows

    def errors(self, x: Tensor) -> Tensor:
        v = stack_frames(x, self.cfg.dcase.context)  # (B, windows, context * n_mels)
        with self.rt.autocast():
            return (self.network(v).float() - v).pow(2).mean(-1).mean(-1)


CHECKPOINT_SECONDS = 30.0  # the reconstructors' training checkpoints at most this often


def build_reconstructor(kind: str, shape: Sequence[int], ae: AutoencoderConfig, dcase: DcaseConfig) -> nn.Module:
    """An untrained reconstruction network for inputs of ``shape`` (one input's ``(C, H, W)``): ``kind``
    ``"autoencoder"``, a convolutional autoencoder over ``(3, S, S)`` images or ``(1, n_mels, frames)`` spectrograms;
    ``"dcase"``, the DCASE baseline over spectrograms."""
    c, h, w = shape
    if kind == "dcase":
        if c != 1:
            raise ViclabError("the dcase_ae detector reconstructs log-mel frames of sound; give sound clips, or use "
                              "the autoencoder detector for images")
        if w < dcase.context:
            raise ViclabError(f"the clips' spectrograms have {w} frames, fewer than dcase.context={dcase.context}; use "
                              "longer clips (sound.clip_seconds) or a smaller dcase.context")
        return DenseAutoencoder(dcase.context * h, dcase.hidden, dcase.bottleneck, dcase.depth)
    if c == 1:
        factor = 2 ** len(ae.widths)
        if h % factor:
            raise ViclabError(f"the spectrograms have {h} mel bands, not a multiple of 2**len(autoencoder.widths) = "
                              f"{factor}; use sound.n_mels={max(factor, h // factor * factor)} or fewer widths")
        return SpecAutoencoder(h, w, ae.widths, ae.latent)
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    return build_autoencoder(h, ae.widths, ae.latent)[0]


class _FirstInput(nn.Module):
    """``(x, *rest) -> network(x)``: a network fed the first tensor of a batch that carries more (its targets)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor, *_rest: Tensor) -> Tensor:
        return self.network(x)


def _train(run_dir: Path, cfg: AutoencoderConfig | DcaseConfig | MachineIdConfig, section: str, model: nn.Module,
           inputs: Tensor, loss, opt, rt: Runtime, ctx: Context, modality: str, batch=None) -> nn.Module:
    """Train ``model`` on ``inputs`` (of ``modality``) in the run folder ``run_dir``: ``loss(outputs, batch)`` returns
    ``(loss,)``; ``batch(data on the device) -> (idx, gen) -> batch`` (default: ``(inputs[idx],)``, reconstructed)."""
    run = RunFolder.open(run_dir, cfg, "auto")
    ckpt = read_checkpoint(run, model)
    model.to(rt.device)
    data = inputs.to(rt.device)
    if ckpt is None:
        fit_standardizers(model, data)
    if data.dim() == 4:
        model.to(memory_format=torch.channels_last)
    objective = Objective(module=_FirstInput(model), loss=loss, terms=("loss",), model=model, optimizers=[opt],
                          fix=f"start again with a lower {section}.lr")

    def reconstruct(idx: Tensor, _gen: torch.Generator) -> tuple[Tensor]:
        return (channels_last(unit_float(data[idx], modality)) if data.dim() == 4 else data[idx],)

    fit(run, objective, lambda _started: batch(data) if batch else reconstruct, n=len(data),
        batch_size=min(cfg.batch_size, len(data)), epochs=cfg.epochs, seed=cfg.seed, rt=rt, ckpt=ckpt,
        checkpoint_seconds=CHECKPOINT_SECONDS, ctx=ctx, epoch_lines=False)
    return model.eval()


def train_machine_id(cfg: MachineIdConfig, data: ImageData, run_dir: Path, rt: Runtime,
                     ctx: Context = DEFAULT_CONTEXT) -> nn.Module:
    """Train :class:`SpecClassifier` to name the machine ID of each normal clip of ``data`` (``(N, 1, n_mels,
    frames)`` log-mel spectrograms) from one random window of ``cfg.window`` frames per clip and step (AdamW,
    cross-entropy), in the run folder ``run_dir``."""
    classes = tuple(sorted(set(check_machine_ids(data, cfg))))
    labels = id_labels(data, classes).to(rt.device)
    torch.manual_seed(cfg.seed)
    model = SpecClassifier(classes)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ce = lambda logits, b: (torch.nn.functional.cross_entropy(logits.float(), b[1]),)
    batch = lambda x: (lambda idx, gen: (channels_last(random_windows(x[idx], cfg.window, gen)), labels[idx]))
    return _train(run_dir, cfg, "machine_id", model, data.images, ce, opt, rt, ctx, "spectrogram", batch)


def check_machine_ids(data: ImageData, cfg: MachineIdConfig) -> np.ndarray:
    """The normal clips' machine IDs, refused unless there are 2 or more and each clip holds a window."""
    ids = data.machine_ids()
    if data.modality != "spectrogram" or ids is None:
        raise ViclabError("the machine_id detector learns to name the machine ID of sound clips, which only the "
                          "MIMII and DCASE layouts give (<type>/id_XX/...); use the dcase_ae or autoencoder detector "
                          "for other data")
    if len(set(ids)) < 2:
        raise ViclabError(f"the normal clips hold one machine ID only ({ids[0]}); the machine_id detector needs two "
                          "or more to tell apart: fit it on every ID of the machine type (sound.machine_ids=)")
    frames = data.images.shape[-1]
    if frames < cfg.window:
        raise ViclabError(f"the clips' spectrograms have {frames} frames, fewer than machine_id.window="
                          f"{cfg.window}; use machine_id.window={frames} or longer clips")
    return ids


def train_autoencoder(cfg: AutoencoderConfig, inputs: Tensor, run_dir: Path, rt: Runtime,
                      ctx: Context = DEFAULT_CONTEXT, *, modality: str) -> nn.Module:
    """Train the convolutional autoencoder on normal inputs of ``modality`` in the run folder ``run_dir``,
    continuing it if it holds this run: ``(N, 3, S, S)`` uint8 images (MSE on pixels in [0, 1]) or
    ``(N, 1, n_mels, frames)`` spectrograms (MSE in dB, standardised inside the network).

    The caller keys the run folder to the inputs (a detector folder records their fingerprint).
    """
    torch.manual_seed(cfg.seed)
    model = build_reconstructor("autoencoder", inputs.shape[1:], cfg, DcaseConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss = lambda out, b: (reconstruction_loss(b[0], out),)
    return _train(run_dir, cfg, "autoencoder", model, inputs, loss, opt, rt, ctx, modality)


def train_dcase(cfg: DcaseConfig, spectrograms: Tensor, run_dir: Path, rt: Runtime,
                ctx: Context = DEFAULT_CONTEXT) -> nn.Module:
    """Train the DCASE 2020 baseline on every window of ``cfg.context`` frames of the normal clips'
    ``(N, 1, n_mels, frames)`` log-mel spectrograms (Adam, MSE), in the run folder ``run_dir``."""
    torch.manual_seed(cfg.seed)
    model = build_reconstructor("dcase", spectrograms.shape[1:], AutoencoderConfig(), cfg)
    vectors = stack_frames(spectrograms, cfg.context).flatten(0, 1).contiguous()  # (N * windows, context * n_mels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    mse = lambda out, b: ((b[0].float() - out.float()).pow(2).mean(),)
    return _train(run_dir, cfg, "dcase", model, vectors, mse, opt, rt, ctx, "spectrogram")


DETECTORS: dict[str, type[Detector]] = {cls.name: cls for cls in (
    KnnDetector, MahalanobisDetector, VICRegTermsDetector, ShiftDetector, AutoencoderDetector, DcaseDetector,
    MachineIdDetector)}
