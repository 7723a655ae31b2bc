"""A tiny whole study on fake data, shared by the study tests (about a minute on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_fake_cifar, write_fake_fsdd, write_fake_mimii, write_fake_mnist
from viclab.core.context import QUIET

# The cpu study shrunk to 100 fake training images: every stage, seconds each.
TINY = ["model.projector=32-32", "train.batch_size=12", "train.epochs=3", "latent.batch_size=20", "latent.epochs=2",
        "latent.dim=16", "latent.projector=32-32", "study.latent_naive_epochs=1", "eigenmaps.dim=8",
        "eval.probe_weight_decays=0.01", "eval.precision_queries=50", "study.detect_classes=0,5",
        "study.detect_epochs=1", "detect.views=2", "detect.batch_size=64", "study.sound_epochs=2",
        "study.sound_views=2", "study.sound_autoencoder_epochs=2", "study.sound_dcase_epochs=2",
        "study.sound_machine_id_epochs=2", "study.sound_probe_epochs=1",
        "train.min_steps=0",  # the stages' exact epochs, no 50-step floor
        # mu = 0 trains on 60 of the 100 training images; both machine types
        "study.no_variance_subset=60", "study.sound_machines=fan,slider"]


@pytest.fixture(scope="session")
def study_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study-data")
    write_fake_cifar(root)
    write_fake_mnist(root, n=12)
    write_fake_fsdd(root)
    # MIMII's four IDs and its sample's 10 normal clips each: 18 to fit on per machine, the sound batch of 16 fits
    write_fake_mimii(root, ids=("id_00", "id_02", "id_04", "id_06"), normal=10)
    return root


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, study_data) -> tuple[Path, dict]:
    """``(study folder, results)`` of one uninterrupted tiny study, with its own feature cache."""
    from viclab.config import resolve
    from viclab.study import run_study

    out = tmp_path_factory.mktemp("study") / "whole"
    mp = pytest.MonkeyPatch()
    mp.setenv("VICLAB_CACHE", str(out.parent / "cache"))
    try:
        cfg = resolve("study", "cpu", overrides=[*TINY, f"data.data_dir={study_data}"])
        results = run_study(cfg, out, ctx=QUIET)
    finally:
        mp.undo()
    return out, results
