"""Loading encoders from every kind of source, and the on-disk representation cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from viclab.config import CIFAR_MEAN, CIFAR_STD
from viclab.errors import ViclabError
from viclab.eval import features as feat_mod
from viclab.eval.features import load_source, representations


def test_sources_load_the_same_weights(tiny_run):
    run, _ = tiny_run
    a, b = load_source(run), load_source(run / "encoder.safetensors")
    assert a.name == "tiny" and b.name == "encoder" and a.weights_sha256 == b.weights_sha256
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    r = load_source("random:small_cnn")
    assert r.dim == 256 and not r.module.training
    # a random encoder is keyed by its initial parameters: same seed, same key; other seed, other key
    assert r.weights_sha256 == load_source("random:small_cnn").weights_sha256
    assert r.weights_sha256 != load_source("random:small_cnn", seed=1).weights_sha256 != a.weights_sha256


@pytest.mark.parametrize("source,fragment", [
    ("/nonexistent/run", "does not exist"),
    ("random:vit99", "unknown backbone 'vit99'"),
])
def test_bad_sources(source, fragment):
    with pytest.raises(ViclabError, match=fragment):
        load_source(source)


def test_unfinished_run_folder(tiny_run, tmp_path):
    run, _ = tiny_run
    half = tmp_path / "half"
    shutil.copytree(run, half)
    (half / "encoder.safetensors").unlink()
    with pytest.raises(ViclabError, match="--resume"):
        load_source(half)


def test_representations_are_the_normalised_forward_pass_and_cached(tiny_run, monkeypatch):
    run, root = tiny_run
    enc = load_source(run)
    reps = representations(enc, "test", data_dir=str(root))
    # independent: normalise by hand in NumPy, then the encoder in eval mode
    x = reps.data.images.numpy().astype(np.float32) / 255
    x = (x - np.array(CIFAR_MEAN, np.float32)[:, None, None]) / np.array(CIFAR_STD, np.float32)[:, None, None]
    with torch.no_grad():
        expect = enc.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(reps.features, expect, rtol=1e-4, atol=1e-5)

    calls = []
    real_encode = feat_mod.encode
    monkeypatch.setattr(feat_mod, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    again = representations(enc, "test", data_dir=str(root))
    assert calls == [] and np.array_equal(again.features, reps.features)
    representations(enc, "test", dataset="mnist", data_dir=str(root))  # other data: computed
    representations(enc, "test", data_dir=str(root), use_cache=False)  # asked not to use the cache
    assert len(calls) == 2
    other = load_source("random:small_cnn")  # cached under its initial parameters' hash
    first = representations(other, "test", data_dir=str(root))
    assert len(calls) == 3
    again = representations(load_source("random:small_cnn"), "test", data_dir=str(root))
    assert len(calls) == 3 and np.array_equal(first.features, again.features)
