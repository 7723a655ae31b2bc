"""kNN graphs and Laplacian Eigenmaps against brute force, dense eigh and known structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from viclab.ablate.graph import SOLVERS, DisconnectedGraphError, knn_table, laplacian_eigenmaps, symmetric_knn_graph
from viclab.represent.table import nystrom_extend


def _dense_normalised_laplacian(w) -> np.ndarray:
    w = np.asarray(w.todense() if sp.issparse(w) else w, dtype=np.float64)
    d = w.sum(1)
    return np.eye(len(w)) - w / np.sqrt(np.outer(d, d))


def _ring(n: int) -> sp.csr_matrix:
    i = np.arange(n)
    a = sp.csr_matrix((np.ones(n), (i, (i + 1) % n)), shape=(n, n))
    return (a + a.T).tocsr()


def test_knn_table_matches_brute_force():
    x = np.random.default_rng(0).standard_normal((80, 6)).astype(np.float32)
    d = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(knn_table(x, 4), np.argsort(d, axis=1, kind="stable")[:, :4])


def test_symmetric_graph_is_the_union_of_knn_edges():
    nb = knn_table(np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32), 3)
    w = symmetric_knn_graph(nb).toarray()
    expected = np.zeros((50, 50))
    for i, row in enumerate(nb):
        expected[i, row] = expected[row, i] = 1
    np.testing.assert_array_equal(w, expected)
    assert (np.diag(w) == 0).all()


@pytest.mark.parametrize("solver", SOLVERS)
def test_eigenvalues_and_vectors_match_dense_eigh(solver):
    x = np.random.default_rng(2).standard_normal((150, 4)).astype(np.float32)
    w = symmetric_knn_graph(knn_table(x, 6))
    lam, v = np.linalg.eigh(_dense_normalised_laplacian(w))
    got = laplacian_eigenmaps(w, 6, solver=solver, tol=1e-10)
    np.testing.assert_allclose(got.eigenvalues, lam[1:7], atol=1e-7)
    assert abs(got.trivial_eigenvalue) < 1e-7
    d = np.asarray(w.sum(1)).ravel()
    # y = D^-1/2 v: the same directions as eigh's (eigenvalues here are simple), D-normalised.
    for j in range(6):
        y_dense = v[:, j + 1] / np.sqrt(d)
        y = got.embedding[:, j].astype(np.float64)
        assert abs(y @ (d * y) - 1) < 1e-5
        assert abs(abs(y @ (d * y_dense)) - 1) < 1e-4


def test_fiedler_vector_separates_two_clusters():
    rng = np.random.default_rng(3)
    block = lambda n: (rng.random((n, n)) < 0.5).astype(float)  # noqa: E731
    w = sp.block_diag([block(40), block(60)]).tolil()
    w[0, 40] = w[40, 0] = 1  # one bridge keeps the graph connected
    w = sp.csr_matrix(w)
    w = ((w + w.T) > 0).astype(float)
    w.setdiag(0)
    fiedler = laplacian_eigenmaps(w, 1).embedding[:, 0]
    assert len({np.sign(v) for v in fiedler[:40]}) == 1 and len({np.sign(v) for v in fiedler[40:]}) == 1
    assert np.sign(fiedler[0]) != np.sign(fiedler[40])


@pytest.mark.parametrize("solver", SOLVERS)
def test_ring_maps_to_a_circle_in_order(solver):
    n = 60
    y = laplacian_eigenmaps(_ring(n), 2, solver=solver).embedding.astype(np.float64)
    radius = np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(radius, radius.mean(), rtol=1e-4)
    steps = np.diff(np.unwrap(np.arctan2(y[:, 1], y[:, 0])))
    # Neighbours on the ring are neighbours on the circle, always one way round, one turn in total.
    np.testing.assert_allclose(np.abs(steps), 2 * np.pi / n, rtol=1e-3)
    assert len({np.sign(s) for s in steps}) == 1


def test_disconnected_graph_is_refused_with_its_components():
    w = sp.block_diag([_ring(10), _ring(7), _ring(5)]).tocsr()
    with pytest.raises(DisconnectedGraphError, match=r"3 connected components \(sizes 10, 7, 5\)"):
        laplacian_eigenmaps(w, 2)


def test_nystrom_reproduces_nodes_from_their_own_edges():
    # On a ring every node has exactly its 2 graph neighbours: the extension formula is the
    # eigen-equation itself, so a node placed from its neighbours lands on its own coordinates.
    n = 40
    maps = laplacian_eigenmaps(_ring(n), 4)
    i = np.arange(n)
    ring_neighbours = np.stack([(i - 1) % n, (i + 1) % n], 1)
    placed = nystrom_extend(maps.embedding.astype(np.float64), maps.eigenvalues, ring_neighbours)
    np.testing.assert_allclose(placed, maps.embedding, atol=1e-5)


def test_bad_sizes_are_one_line_errors():
    from viclab.core.errors import ViclabError

    with pytest.raises(ViclabError, match="nearest neighbours among 5 points"):
        knn_table(np.zeros((5, 2), np.float32), 5)
    with pytest.raises(ViclabError, match="non-trivial eigenvectors"):
        laplacian_eigenmaps(_ring(6), 5)
