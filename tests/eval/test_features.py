"""Loading encoders from every kind of source, and the on-disk representation cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from viclab.core.context import QUIET
from viclab.core.errors import ViclabError
from viclab.models import get_backbone
from viclab.represent import encode as feat_mod
from viclab.represent.encode import load_source, representations


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
    reps = representations(enc, "test", ctx=QUIET.reading(str(root)))
    # independent: normalise by hand in NumPy, then the encoder in eval mode
    x = reps.data.images.numpy().astype(np.float32) / 255
    facts = get_backbone(enc.config.model.backbone)  # the normalisation its registry entry names
    x = (x - np.array(facts.mean, np.float32)[:, None, None]) / np.array(facts.std, np.float32)[:, None, None]
    with torch.no_grad():
        expect = enc.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(reps.features, expect, rtol=1e-4, atol=1e-5)

    calls = []
    real_encode = feat_mod.encode
    monkeypatch.setattr(feat_mod, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    again = representations(enc, "test", ctx=QUIET.reading(str(root)))
    assert calls == [] and np.array_equal(again.features, reps.features)
    representations(enc, "test", dataset="mnist", ctx=QUIET.reading(str(root)))  # other data: computed
    representations(enc, "test", ctx=QUIET.reading(str(root)), use_cache=False)  # asked not to use the cache
    assert len(calls) == 2
    other = load_source("random:small_cnn")  # cached under its initial parameters' hash
    first = representations(other, "test", ctx=QUIET.reading(str(root)))
    assert len(calls) == 3
    again = representations(load_source("random:small_cnn"), "test", ctx=QUIET.reading(str(root)))
    assert len(calls) == 3 and np.array_equal(first.features, again.features)


def test_cache_keeps_precisions_apart(tiny_run):
    """bf16 representations differ from fp32 ones: a cache keyed without the precision would
    hand one for the other."""
    from viclab.core.context import Context
    from viclab.core.runtime import select_runtime

    run, root = tiny_run
    enc = load_source(run)
    fp32 = representations(enc, "test", ctx=QUIET.reading(str(root)), use_cache=False).features
    bf16 = representations(enc, "test",
                           ctx=Context(False, runtime=select_runtime("cpu", "bf16"), data_dir=str(root))).features
    assert not np.array_equal(bf16, fp32)  # so the check below can tell them apart
    again = representations(enc, "test",
                            ctx=Context(False, runtime=select_runtime("cpu", "fp32"), data_dir=str(root))).features
    np.testing.assert_array_equal(again, fp32)


def test_evaluations_encode_in_fp32_on_a_gpu_too(monkeypatch):
    from viclab.config import EvalConfig
    from viclab.represent.encode import eval_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    rt = eval_runtime()
    assert rt.device.type == "cuda" and rt.autocast_dtype is None  # training there would pick bf16
    assert eval_runtime(EvalConfig(precision="bf16")).autocast_dtype == torch.bfloat16


def test_cache_is_keyed_by_the_code_version(tiny_run, monkeypatch):
    import viclab

    run, root = tiny_run
    enc = load_source(run)
    representations(enc, "test", ctx=QUIET.reading(str(root)))
    calls = []
    real_encode = feat_mod.encode
    monkeypatch.setattr(feat_mod, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k))
    representations(enc, "test", ctx=QUIET.reading(str(root)))
    assert calls == []
    monkeypatch.setattr(viclab, "__version__", "999.0")
    representations(enc, "test", ctx=QUIET.reading(str(root)))
    assert calls == [1]


def test_damaged_cache_file_is_reported_and_recomputed(tiny_run, tmp_path):
    run, root = tiny_run
    enc = load_source(run)
    expect = representations(enc, "test", ctx=QUIET.reading(str(root))).features
    cached = list((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 1
    cached[0].write_bytes(b"\x93NUMPY garbage")
    with pytest.warns(UserWarning, match="are damaged"):
        again = representations(enc, "test", ctx=QUIET.reading(str(root))).features
    np.testing.assert_array_equal(again, expect)
    np.testing.assert_array_equal(np.load(cached[0]), expect)  # and the cache is repaired


def test_bit_identical_encoders_share_one_hash(tiny_run, tmp_path):
    """safetensors writes its metadata in no fixed key order, so the files' bytes can differ."""
    from viclab.engine.checkpoint import load_encoder, save_encoder

    run, _ = tiny_run
    module, dim, cfg = load_encoder(run / "encoder.safetensors")
    paths = [tmp_path / f"e{i}.safetensors" for i in range(6)]
    for p in paths:
        save_encoder(p, module, cfg, dim)
    assert len({load_source(p).weights_sha256 for p in paths}) == 1
    with torch.no_grad():
        module.state_dict()["features.0.weight"][0, 0, 0, 0] += 1.0  # one weight changed: another hash
    save_encoder(tmp_path / "changed.safetensors", module, cfg, dim)
    assert load_source(tmp_path / "changed.safetensors").weights_sha256 != load_source(paths[0]).weights_sha256


def test_empty_folder_is_not_called_an_unfinished_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViclabError, match="is not a run folder") as e:
        load_source(tmp_path / "empty")
    assert "--resume" not in str(e.value)
