"""Neighbours as views (spec S6): the sampler, the pairs, and a run every eval command accepts."""

from __future__ import annotations

import json

import numpy as np
import torch

from viclab.ablate.neighbours import NEIGHBOURS, NeighbourPairs, sample_neighbours
from viclab.cli import main
from viclab.config import AugmentConfig
from viclab.core.context import QUIET


def test_sampler_pairs_only_with_the_three_precomputed_neighbours():
    n, k = 500, 3
    gen = torch.Generator().manual_seed(0)
    table = torch.stack([torch.randperm(n - 1, generator=gen)[:k] for _ in range(n)])
    table += (table >= torch.arange(n)[:, None]).long()  # skip the row itself
    counts = torch.zeros(n, k)
    for _ in range(200):
        idx = torch.randint(0, n, (256,), generator=gen)
        j = sample_neighbours(table, idx, gen)
        hit = table[idx] == j[:, None]
        assert (hit.sum(1) == 1).all() and (j != idx).all()
        counts.index_put_((idx, hit.float().argmax(1)), torch.ones(len(idx)), accumulate=True)
    share = counts.sum(0) / counts.sum()
    assert torch.allclose(share, torch.full((k,), 1 / k), atol=0.02)  # uniform over the 3


def test_pairs_are_an_image_and_a_neighbour_normalised_only():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    table = torch.stack([(torch.arange(3) + i + 1) % 40 for i in range(40)])
    aug = AugmentConfig(size=8)
    mean, std = torch.tensor(aug.mean)[:, None, None], torch.tensor(aug.std)[:, None, None]
    norm = (images.float() / 255 - mean) / std
    idx = torch.arange(0, 40, 2)
    v1, v2 = NeighbourPairs(images, table, aug, "image")(idx, gen)
    torch.testing.assert_close(v1, norm[idx])
    for row, i in zip(v2, idx.tolist()):
        matches = [j for j in range(40) if torch.allclose(row, norm[j])]
        assert len(matches) == 1 and matches[0] in table[i].tolist() and matches[0] != i


def test_neighbours_run_from_a_trained_run(tiny_run, tmp_path, capsys):
    from viclab.represent.encode import load_source, representations

    src, root = tiny_run
    argv = ["ablate", "neighbours", str(src), "--data-dir", str(root), "--out", str(tmp_path), "--name", "nb",
            "--no-progress", "train.eval_test=false"]
    assert main(argv) == 0
    run = tmp_path / "nb"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["views"] == {"kind": "neighbours", "source": str(src), "k": 3} and cfg["train"]["epochs"] == 1
    assert cfg["optim"] == json.loads((src / "config.json").read_text())["optim"]  # the source's recipe
    # The saved table is the brute-force 3-NN (without itself) of the source's training representations.
    x = representations(load_source(src), "train", ctx=QUIET.reading(str(root))).features.astype(np.float64)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(np.load(run / NEIGHBOURS), 1), np.sort(np.argsort(d, 1)[:, :3], 1))
    assert len([line for line in (run / "metrics.jsonl").read_text().splitlines()]) == 100 // 20
    capsys.readouterr()
    for cmd in ("probe", "plot", "retrieve", "cluster"):
        extra = ["--clusters", "3", "--tsne-points", "50"] if cmd == "cluster" else []
        assert main([cmd, str(run), "--data-dir", str(root), "--no-progress", *extra]) == 0, cmd
    assert main(["anomaly", str(run), str(src), "--data-dir", str(root), "--no-progress",
                 "--out", str(tmp_path / "a")]) == 0
    assert {p.name for p in (run / "eval").iterdir()} >= {"probe.json", "plot.json", "retrieval.json", "cluster.json"}


def _knn3(x: np.ndarray, k: int = 3) -> np.ndarray:
    x = x.astype(np.float64)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(np.argsort(d, 1)[:, :k], 1)


def test_neighbour_table_follows_the_source_weights(tiny_run, tmp_path):
    """The table is keyed by the source weights' SHA-256: other weights at the same path rebuild it,
    and a run that already trained on the old table is refused instead of continued on other pairs."""
    import dataclasses
    import shutil

    import pytest

    from viclab.ablate.neighbours import neighbour_table, neighbours_config
    from viclab.core.errors import ViclabError
    from viclab.engine.checkpoint import load_encoder, save_encoder
    from viclab.engine.vicreg import load_split
    from viclab.represent.encode import load_source, representations

    src, root = tiny_run
    weights = tmp_path / "source.safetensors"
    shutil.copy(src / "encoder.safetensors", weights)
    cfg = neighbours_config(str(weights), k=3)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(root)))
    data = load_split(cfg, "train")
    run = tmp_path / "run"
    run.mkdir()
    first = neighbour_table(run, cfg, data, QUIET)
    rep_a = representations(load_source(weights), "train", ctx=QUIET.reading(str(root))).features
    np.testing.assert_array_equal(np.sort(first, 1), _knn3(rep_a))
    # other weights under the same file name
    module, dim, enc_cfg = load_encoder(weights)
    torch.manual_seed(5)
    for p in module.parameters():
        torch.nn.init.normal_(p)
    save_encoder(weights, module, enc_cfg, dim)
    rep_b = representations(load_source(weights), "train", ctx=QUIET.reading(str(root))).features
    assert not np.array_equal(_knn3(rep_a), _knn3(rep_b))
    np.testing.assert_array_equal(np.sort(neighbour_table(run, cfg, data, QUIET), 1), _knn3(rep_b))
    shutil.copy(src / "encoder.safetensors", weights)  # back to A, with a run that trained on B's pairs
    with pytest.raises(ViclabError, match="already trained on it; start a new run"):
        neighbour_table(run, cfg, data, QUIET, started=True)
