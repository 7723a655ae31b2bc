"""A tiny trained run on fake CIFAR-10 plus a fake MNIST test split, shared by the eval tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_fake_cifar, write_fake_mnist


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """``(run folder, data root)``: 1 epoch of small_cnn on 100 fake CIFAR images."""
    from viclab.config import resolve_config
    from viclab.train import train

    root = tmp_path_factory.mktemp("data")
    write_fake_cifar(root)
    write_fake_mnist(root, n=12)
    cfg = resolve_config("cpu", overrides=["model.projector=32-32", "train.batch_size=20", "train.epochs=1",
                                           f"data.data_dir={root}", "train.eval_test=false"])
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(cfg, run, progress=False, echo=lambda s: None)
    return run, root


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
