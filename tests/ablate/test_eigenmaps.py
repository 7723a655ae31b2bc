"""Laplacian Eigenmaps runs (spec S7): all images, a table every eval command reads, Nyström for the rest."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp

from viclab.ablate.graph import knn_table, run_eigenmaps, symmetric_knn_graph
from viclab.cli import main
from viclab.config import EigenmapsConfig
from viclab.core.context import QUIET
from viclab.represent.table import TABLE, load_table


def test_eigenmaps_run_covers_train_and_test_and_solves_the_eigen_equation(tiny_run, tmp_path, capsys):
    from viclab.represent.encode import load_source, representations

    _, root = tiny_run
    run = tmp_path / "le"
    assert main(["ablate", "laplacian", "--data-dir", str(root), "--dim", "5", "--out", str(tmp_path), "--name", "le",
                 "--no-progress"]) == 0
    assert "1 component" in capsys.readouterr().out
    table, extra = load_table(run / TABLE)
    assert table.splits["train"].features.shape == (100, 5) and table.splits["test"].features.shape == (20, 5)
    # Independent check: rebuild the graph over train + test features and test L y = lambda D y densely.
    cfg = EigenmapsConfig(**json.loads((run / "config.json").read_text()))
    enc = load_source(cfg.features, seed=cfg.seed)
    x = np.concatenate([representations(enc, s, ctx=QUIET.reading(str(root))).features for s in ("train", "test")])
    w = symmetric_knn_graph(knn_table(x, cfg.k)).toarray()
    d = w.sum(1)
    y = np.concatenate([table.splits["train"].features, table.splits["test"].features]).astype(np.float64)
    np.testing.assert_allclose((np.diag(d) - w) @ y, (d[:, None] * y) * extra["eigenvalues"], atol=1e-4)
    lam = np.linalg.eigvalsh(np.eye(len(d)) - w / np.sqrt(np.outer(d, d)))
    np.testing.assert_allclose(extra["eigenvalues"], lam[1:6], atol=1e-6)
    summary = json.loads((run / "eigenmaps.json").read_text())
    assert summary["nodes"] == 120 and summary["components"] == 1 and summary["edges"] == sp.csr_matrix(w).nnz // 2


def test_every_eval_command_accepts_an_eigenmaps_run(tiny_run, tmp_path, capsys):
    _, root = tiny_run
    run = tmp_path / "le"
    run_eigenmaps(EigenmapsConfig(data_dir=str(root), dim=5), run, ctx=QUIET)
    common = ["--data-dir", str(root), "--no-progress"]
    assert main(["probe", str(run), *common]) == 0
    assert main(["plot", str(run), *common]) == 0
    assert main(["retrieve", str(run), *common]) == 0
    assert main(["cluster", str(run), *common, "--clusters", "3", "--tsne-points", "50"]) == 0
    assert main(["anomaly", str(run), *common]) == 0  # MNIST placed by the Nyström extension
    assert "AUROC" in capsys.readouterr().out
    assert main(["compare", str(run), *common, "--out", str(tmp_path / "cmp")]) == 0
    row = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]
    assert row["kind"] == "eigenmaps" and row["auroc"] is not None and row["n_test"] == 20


def test_disconnected_graph_is_one_line_error(tiny_run, tmp_path, capsys):
    _, root = tiny_run
    code = main(["ablate", "laplacian", "--data-dir", str(root), "--k", "1", "--dim", "3", "--out", str(tmp_path),
                 "--name", "le", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("viclab: error: the graph has") and "connected components" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "le" / TABLE).exists()
    # Nothing was computed, so the same folder takes the fix.
    assert main(["ablate", "laplacian", "--data-dir", str(root), "--dim", "3", "--out", str(tmp_path),
                 "--name", "le", "--no-progress"]) == 0
    assert (tmp_path / "le" / TABLE).exists()
