"""Evaluating frozen encoders (spec §3): representations, probes, maps, retrieval, anomalies, clusters.

Low-level functions take arrays; the ``run_*`` tasks take a run folder, a ``.safetensors`` file or
``random:BACKBONE`` and write figures and JSON.
"""

from viclab.core.metrics import roc
from viclab.eval.cluster import kmeans, pca_2d, silhouette, tsne, tsne_2d
from viclab.eval.probe import ProbeResult, knn_accuracy, knn_scores, linear_probe, topk_accuracy
from viclab.eval.tasks import compare_one, run_cluster, run_compare, run_plot, run_probe, run_retrieve
from viclab.represent.encode import Representations, Source, encode, encoder_source, load_source, representations
from viclab.represent.neighbors import farthest, knn_anomaly_scores, nearest, one_query_per_class, precision_at_k

__all__ = [
    "ProbeResult", "Representations", "Source", "compare_one", "encode", "encoder_source", "farthest", "kmeans",
    "knn_accuracy", "knn_anomaly_scores", "knn_scores", "linear_probe", "load_source", "nearest",
    "one_query_per_class", "pca_2d", "precision_at_k", "representations", "roc", "run_cluster", "run_compare",
    "run_plot", "run_probe", "run_retrieve", "silhouette", "topk_accuracy", "tsne", "tsne_2d",
]
