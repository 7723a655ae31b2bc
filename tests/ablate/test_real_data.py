"""Laplacian Eigenmaps on real CIFAR-10 images (skips without the data)."""

from __future__ import annotations

import numpy as np

from viclab.ablate.graph import components, knn_table, laplacian_eigenmaps, symmetric_knn_graph
from viclab.eval.probe import knn_accuracy
from viclab.represent.encode import encode, load_source


def test_eigenmaps_of_real_images_carry_class_information(real_data):
    from viclab.data import load_dataset

    data = load_dataset("cifar10", "train", real_data).subset(4000)
    enc = load_source("random:conv4")
    x = encode(enc.module, data.images, enc.config.augment, modality=data.modality).numpy()
    graph = symmetric_knn_graph(knn_table(x, 10))
    assert components(graph)[0] == 1
    maps = laplacian_eigenmaps(graph, 32)
    y = maps.embedding.astype(np.float64)
    labels = data.labels.numpy()
    # First 3,000 images as reference, last 1,000 as queries: well above the 10% of chance.
    acc = knn_accuracy(y[:3000], labels[:3000], y[3000:], labels[3000:], k=20, temperature=0.07)[1]
    assert acc > 0.2, acc
    # The eigen-equation holds on real data: L y = lambda D y.
    d = np.asarray(graph.sum(1)).ravel()
    residual = (d[:, None] * y - graph @ y) - maps.eigenvalues * d[:, None] * y
    assert np.abs(residual).max() < 1e-3 * np.abs(d[:, None] * y).max()
