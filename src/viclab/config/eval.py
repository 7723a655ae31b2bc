"""Evaluating a frozen encoder (:class:`EvalConfig`); the encoder-free ablations (latent codes, Laplacian Eigenmaps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from viclab.config.override import at_least, check, finite, known
from viclab.config.train import LossConfig

# The anomalies of every kNN-anomaly evaluation (``viclab anomaly``, ``compare``, the study): a dataset's test split.
ANOMALIES = "mnist"


@dataclass(frozen=True)
class EvalConfig:
    """What evaluating a frozen encoder computes (spec §3); the CLI's flags map onto it. Not part of
    :class:`Config`: evaluation never changes a training run's numbers."""

    seed: int = 0  # queries, held-out split, K-means, t-SNE
    probe_weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # chosen on held-out 10%
    knn_k: int = 20  # weighted kNN classifier (solo-learn's k and temperature)
    knn_temperature: float = 0.07
    retrieval_k: int = 5  # nearest / most distant images per query
    precision_queries: int = 10_000  # training images averaged in precision@k
    anomaly_k: int = 2  # score = mean L2 distance to the k nearest training representations
    anomaly_top: int = 7  # most anomalous test images shown per run
    # last: the encoder's output (spec A1); all: every stage pooled (viclab.represent.layers), what keeps colour and
    # contrast that invariance training removed from the last layer (docs/detection.md#a1)
    anomaly_layers: str = "last"
    clusters: int = 10
    tsne_points: int = 10_000  # points t-SNE embeds in the cluster figure (a seeded sample)
    device: str = "auto"  # where encoders run: auto (CUDA if present) | cpu | cuda[:N]
    precision: str = "fp32"  # on every device unless asked (bf16/fp16 change the numbers; the cache keys them apart)

    def __post_init__(self) -> None:
        finite(self)
        known(self, "", "precision", ("fp32", "bf16", "fp16"), "fp32, bf16 or fp16")
        known(self, "", "anomaly_layers", ("last", "all"), "last or all")
        at_least(self, "", 1, "knn_k", "retrieval_k", "precision_queries", "anomaly_k", "anomaly_top", "tsne_points")
        at_least(self, "", 2, "clusters")
        check(self.knn_temperature > 0, f"knn_temperature={self.knn_temperature} must be > 0")
        check(len(self.probe_weight_decays) >= 1 and min(self.probe_weight_decays) >= 0,
               "probe_weight_decays needs at least one value, each >= 0")
        check(self.tsne_points >= 5, f"tsne_points={self.tsne_points} must be >= 5 (t-SNE needs a neighbourhood)")


EVAL_DEFAULTS = EvalConfig()


@dataclass(frozen=True)
class LatentConfig:
    """Latent optimisation (spec S5): a free code per training image, no encoder.

    ``pairs="naive"`` pairs each code with itself (the two "views" of an image share its code, so invariance is
    identically 0); ``pairs="graph"`` pairs it with one of its ``graph_k`` nearest images in a fixed data space
    (the representations of ``graph_features``), which makes the objective Laplacian-Eigenmaps-like.
    """

    pairs: str = "graph"
    dataset: str = "cifar10"
    data_dir: str | None = None
    subset: int = 0  # first N training images (0 = all)
    dim: int = 128  # code width (the exercise's representation dim)
    projector: str = "512-512-512"
    graph_features: str = "random:conv4"
    graph_k: int = 10
    epochs: int = 30
    batch_size: int = 256
    # Sparse (lazy) Adam on the codes: a code moves only a few times per epoch, so it needs a far larger
    # rate than the projector (measured: docs/recipes.md).
    lr: float = 0.2
    projector_lr: float = 1e-3
    probe_fraction: float = 0.9  # codes the probe trains on; it is tested on the rest
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        finite(self)
        known(self, "", "pairs", ("graph", "naive"), "'graph' or 'naive'")
        at_least(self, "", 1, "dim", "graph_k", "epochs")
        check(self.batch_size >= 2, f"batch_size={self.batch_size} must be >= 2 (variance needs 2 samples)")
        check(self.lr > 0 and self.projector_lr > 0, "lr and projector_lr must be > 0")
        check(0 < self.probe_fraction < 1, f"probe_fraction={self.probe_fraction} must be in (0, 1)")
        check(self.subset >= 0, f"subset={self.subset} must be >= 0 (0 = all images)")


@dataclass(frozen=True)
class EigenmapsConfig:
    """Laplacian Eigenmaps (spec S7) on the training and test images together.

    Features: an encoder source, by default the seeded untrained ``conv4`` CNN; graph: symmetric binary ``k``-NN
    (exact L2); representation: the ``dim`` smallest non-trivial generalised eigenvectors of the graph Laplacian.
    """

    dataset: str = "cifar10"
    data_dir: str | None = None
    features: str = "random:conv4"
    k: int = 10
    dim: int = 64
    solver: str = "arpack"  # fastest measured (benchmarks/laplacian.py)
    seed: int = 0

    def __post_init__(self) -> None:
        at_least(self, "", 1, "k", "dim")
        known(self, "", "solver", ("arpack", "lobpcg", "sklearn"), "arpack, lobpcg or sklearn")
