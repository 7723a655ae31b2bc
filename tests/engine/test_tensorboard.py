"""TensorBoard images: both views of fixed training images each epoch, evaluation figures of a run."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from tests.engine.test_train import QUIET, tiny_config
from viclab.core.context import Context
from viclab.engine import train


def _images(log_dir) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})
    acc.Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()["images"]}


def test_views_of_fixed_images_each_epoch_and_eval_figures(fake_cifar_root, tmp_path):
    from viclab.eval.tasks import run_plot, run_retrieve

    run = train(tiny_config(fake_cifar_root, "train.epochs=2", "augment.size=16", "augment.blur_kernel=3"),
                tmp_path / "run", **QUIET).run_dir
    images = _images(run / "tb")
    assert set(images) == {"views/first", "views/second"}
    for tag in images:
        assert [e.step for e in images[tag]] == [5, 10]  # one grid per epoch, at its last step (100 / 20)
        grid = np.asarray(Image.open(io.BytesIO(images[tag][0].encoded_image_string)))
        assert grid.shape[0] >= 16 and grid.std() > 0  # a grid of 16-px views, not a blank image
    # fresh views each epoch, and the two views of an epoch differ
    raw = {tag: [np.asarray(Image.open(io.BytesIO(e.encoded_image_string))) for e in images[tag]] for tag in images}
    assert not np.array_equal(raw["views/first"][0], raw["views/first"][1])
    assert not np.array_equal(raw["views/first"][0], raw["views/second"][0])

    run_plot(run, data_dir=str(fake_cifar_root), ctx=Context(False, lambda s: None))
    run_retrieve(run, data_dir=str(fake_cifar_root), ctx=Context(False, lambda s: None))
    tags = set(_images(run / "tb"))
    assert {"eval/cifar10/pca", "eval/cifar10/tsne", "eval/cifar10/retrieval_nearest",
            "eval/cifar10/retrieval_farthest"} <= tags
    pca = _images(run / "tb")["eval/cifar10/pca"][0]
    on_disk = np.asarray(Image.open(run / "eval" / "pca.png").convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(pca.encoded_image_string)).convert("RGB")), on_disk)


def test_preview_seed_takes_any_training_seed():
    """A timestamp-sized train.seed must not overflow the preview generator's 64-bit seed."""
    from viclab.engine.vicreg import ViewPreview

    cfg = tiny_config("/nonexistent", "train.seed=20261206120000")
    preview = ViewPreview(10, cfg, torch.device("cpu"))
    preview.source = lambda idx, gen: (torch.rand(len(idx), 3, 4, 4, generator=gen),) * 2
    views = preview(3)
    assert views["views/first"].shape == (8, 3, 4, 4)


def test_preview_leaves_training_bit_identical(fake_cifar_root, tmp_path, monkeypatch):
    """The views shown in TensorBoard come from a generator of their own: the weights are those of
    a run that draws no preview."""
    from viclab.engine import loop as engine

    cfg = tiny_config(fake_cifar_root, "train.epochs=2", "augment.size=16", "augment.blur_kernel=3")
    a = train(cfg, tmp_path / "a", **QUIET).run_dir
    real_fit = engine.fit

    def fit_without_preview(run, objective, *args, **kwargs):
        objective.preview = None
        return real_fit(run, objective, *args, **kwargs)

    monkeypatch.setattr("viclab.engine.vicreg.fit", fit_without_preview)
    b = train(cfg, tmp_path / "b", **QUIET).run_dir
    from safetensors.torch import load_file

    wa, wb = load_file(a / "encoder.safetensors"), load_file(b / "encoder.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert set(_images(b / "tb")) == set()
