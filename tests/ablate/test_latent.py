"""Latent optimisation (spec S5): naive invariance is exactly 0, graph pairs, 90/10 probe, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from viclab.ablate import latent
from viclab.config import LatentConfig
from viclab.core.context import QUIET, Context
from viclab.core.errors import ViclabError
from viclab.engine.rundir import read_metrics
from viclab.represent.table import TABLE, load_table

SMALL = dict(dim=8, projector="16-16", batch_size=20, epochs=3)


def _cfg(root, **kw) -> LatentConfig:
    return LatentConfig(data_dir=str(root), **{**SMALL, **kw})


def test_naive_invariance_is_exactly_zero_and_probe_splits_codes(tiny_run, tmp_path):
    from viclab.eval.tasks import run_probe

    _, root = tiny_run
    run = tmp_path / "naive"
    latent.run_latent(_cfg(root, pairs="naive"), run, ctx=QUIET)
    records = read_metrics(run / "metrics.jsonl")
    assert len(records) == 3 * (100 // 20)
    assert all(r["invariance"] == 0.0 for r in records) and all(r["covariance"] > 0 for r in records)
    table, _ = load_table(run / TABLE)
    fit, held = table.splits["train"].index, table.splits["test"].index
    assert len(fit) == 90 and len(held) == 10 and not set(fit) & set(held)
    assert table.splits["test"].source_split == "train"  # held-out *training* images
    probe = run_probe(run, data_dir=str(root), ctx=QUIET)
    assert (probe["n_train"], probe["n_test"]) == (90, 10)


def test_graph_pairs_use_the_fixed_data_space_neighbours(tiny_run, tmp_path):
    from viclab.represent.encode import load_source, representations

    _, root = tiny_run
    run = tmp_path / "graph"
    cfg = _cfg(root, graph_k=4)
    summary = latent.run_latent(cfg, run, ctx=QUIET)
    x = representations(load_source(cfg.graph_features, seed=cfg.seed), "train", ctx=QUIET.reading(str(root))).features
    d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(np.load(run / latent.GRAPH), 1), np.sort(np.argsort(d, 1)[:, :4], 1))
    assert all(r["invariance"] > 0 for r in read_metrics(run / "metrics.jsonl"))
    assert 0 <= summary["graph_same_class"] <= 1


def test_killed_latent_run_resumes_to_the_same_codes(tiny_run, tmp_path, monkeypatch):
    _, root = tiny_run
    cfg = _cfg(root, epochs=4)
    latent.run_latent(cfg, tmp_path / "whole", ctx=QUIET)
    monkeypatch.setattr(latent, "CHECKPOINT_SECONDS", 0.0)  # checkpoint every epoch
    calls = {"n": 0}
    real = latent.partners

    def dies_in_epoch_3(*args):
        calls["n"] += 1
        if calls["n"] == 2 * 5 + 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(latent, "partners", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        latent.run_latent(cfg, tmp_path / "killed", ctx=QUIET)
    assert not (tmp_path / "killed" / TABLE).exists()
    monkeypatch.setattr(latent, "partners", real)
    latent.run_latent(cfg, tmp_path / "killed", ctx=QUIET)
    a, _ = load_table(tmp_path / "whole" / TABLE)
    b, _ = load_table(tmp_path / "killed" / TABLE)
    np.testing.assert_array_equal(a.splits["train"].features, b.splits["train"].features)
    steps = [r["step"] for r in read_metrics(tmp_path / "killed" / "metrics.jsonl")]
    assert steps == list(range(1, 4 * 5 + 1))


def test_codes_cannot_represent_unseen_images(tiny_run, tmp_path):
    from viclab.detect.anomaly import run_anomaly

    _, root = tiny_run
    latent.run_latent(_cfg(root, pairs="naive", epochs=1), tmp_path / "r", ctx=QUIET)
    with pytest.raises(ViclabError, match="no encoder, only stored representations of cifar10 train"):
        run_anomaly([tmp_path / "r"], data_dir=str(root), ctx=QUIET)


def test_a_finished_run_is_not_redone_and_another_config_is_refused(tiny_run, tmp_path):
    _, root = tiny_run
    first = latent.run_latent(_cfg(root, epochs=1), tmp_path / "r", ctx=QUIET)
    assert latent.run_latent(_cfg(root, epochs=1), tmp_path / "r", ctx=QUIET) == first
    assert json.loads((tmp_path / "r" / "config.json").read_text())["epochs"] == 1
    with pytest.raises(ViclabError, match="another config"):
        latent.run_latent(_cfg(root, epochs=2), tmp_path / "r", ctx=QUIET)


def test_plot_of_codes_says_they_are_held_out_training_images(tiny_run, tmp_path, monkeypatch):
    from viclab.eval.tasks import run_plot
    from viclab.plot import figures

    _, root = tiny_run
    latent.run_latent(_cfg(root, pairs="naive", epochs=1), tmp_path / "r", ctx=QUIET)
    titles = []
    real = figures.scatter_png
    monkeypatch.setattr(figures, "scatter_png", lambda pts, y, cls, title, path: titles.append(title)
                        or real(pts, y, cls, title, path))
    run_plot(tmp_path / "r", data_dir=str(root), ctx=QUIET)
    assert len(titles) == 2 and all("10 cifar10 held-out training representations" in t for t in titles), titles


def test_graph_is_rebuilt_when_its_feature_weights_change(tiny_run, tmp_path, monkeypatch):
    """graph.npy is keyed by the SHA-256 of the weights it came from: a run continued after the
    feature encoder changed must not reuse the old graph."""
    import shutil

    import torch

    from viclab.engine.checkpoint import load_encoder, save_encoder
    from viclab.represent.encode import load_source, representations

    src, root = tiny_run
    weights = tmp_path / "features.safetensors"
    shutil.copy(src / "encoder.safetensors", weights)
    cfg = _cfg(root, graph_k=4, graph_features=str(weights))
    run = tmp_path / "graph"

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(latent, "build_latent", killed)  # killed right after the graph was built
    with pytest.raises(KeyboardInterrupt):
        latent.run_latent(cfg, run, ctx=QUIET)
    monkeypatch.undo()
    module, dim, enc_cfg = load_encoder(weights)
    torch.manual_seed(7)
    for p in module.parameters():
        torch.nn.init.normal_(p)
    save_encoder(weights, module, enc_cfg, dim)
    latent.run_latent(cfg, run, ctx=QUIET)
    x = representations(load_source(weights), "train", ctx=QUIET.reading(str(root))).features.astype(np.float64)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(np.load(run / latent.GRAPH), 1), np.sort(np.argsort(d, 1)[:, :4], 1))


def test_latent_codes_of_an_image_folder_dataset(tmp_path):
    """``ablate latent --dataset FOLDER`` (offered by its help) trains on an ImageNet-style folder."""
    from PIL import Image

    from viclab.cli import main

    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 6)):
        for c in ("a", "b"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(n // 2):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{i}.png")
    argv = ["ablate", "latent", "--dataset", str(tmp_path / "data"), "--dim", "8", "--projector", "16-16",
            "--batch-size", "10", "--epochs", "1", "--graph-k", "3", "--out", str(tmp_path / "runs"), "--name", "lat",
            "--no-progress"]
    assert main(argv) == 0
    table, _ = load_table(tmp_path / "runs" / "lat" / TABLE)
    assert len(table.splits["train"].index) + len(table.splits["test"].index) == 30
    assert main(["probe", str(tmp_path / "runs" / "lat"), "--no-progress"]) == 0


@pytest.mark.parametrize("busy,threads", [(0.0, 2), (0.4, 2), (0.6, 1), (3.0, 1)])
def test_optimisation_drops_to_one_thread_beside_busy_processes(tiny_run, tmp_path, monkeypatch, busy, threads):
    """Its small ops run on one intra-op thread when other processes keep half a core busy (there every op
    of a 2-thread loop waited for a descheduled thread), else on the caller's threads, which are restored
    afterwards, also when the run fails."""
    import torch

    _, root = tiny_run
    seen, real_fit = [], latent.fit

    def fit(*a, **k):
        seen.append(torch.get_num_threads())
        return real_fit(*a, **k)

    monkeypatch.setattr(latent, "fit", fit)
    monkeypatch.setattr(latent, "others_busy_cores", lambda: busy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lines = []
        latent.run_latent(_cfg(root, pairs="naive"), tmp_path / "a", ctx=Context(False, lines.append))
        assert seen == [threads] and torch.get_num_threads() == 2
        assert any("runs on one thread" in line for line in lines) == (threads == 1)
        monkeypatch.setattr(latent, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            latent.run_latent(_cfg(root, pairs="naive"), tmp_path / "b", ctx=QUIET)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_other_processes_busy_cores_are_measured():
    """A spinning child process is seen as about one busy core (this process sleeps meanwhile)."""
    import subprocess
    import sys
    import time

    from viclab.core.runtime import others_busy_cores

    if not __import__("os").path.exists("/proc/stat"):
        pytest.skip("needs Linux /proc/stat")
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert others_busy_cores(0.5) >= 0.6
    finally:
        child.kill()
