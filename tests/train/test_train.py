"""Training: run folder contents, logged terms, bit-exact resume, user errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from viclab.config import Config, resolve_config
from viclab.errors import ViclabError
from viclab.train import loop as loop_mod
from viclab.train import train
from viclab.train.checkpoint import load_encoder
from viclab.train.rundir import read_metrics

SMALL = ["model.backbone=small_cnn", "model.projector=64-64", "train.batch_size=16", "train.epochs=3",
         "optim.name=adamw", "optim.lr=1e-3", "optim.schedule=cosine", "optim.warmup_epochs=1"]


def small_config(root, *extra):
    return resolve_config("cpu", overrides=[*SMALL, f"data.data_dir={root}", *extra])


def test_run_folder_and_metrics(fake_cifar_root, tmp_path):
    cfg = small_config(fake_cifar_root)
    run = tmp_path / "run"
    result = train(cfg, run, progress=False, echo=lambda s: None)
    for name in ("config.json", "meta.json", "metrics.jsonl", "checkpoint.pt", "encoder.safetensors"):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert Config.from_dict(json.loads((run / "config.json").read_text())) == cfg
    meta = json.loads((run / "meta.json").read_text())
    assert meta["versions"]["torch"] == torch.__version__ and meta["git_commit"]
    records = read_metrics(run / "metrics.jsonl")
    steps = 100 // 16
    tr = [r for r in records if r["split"] == "train"]
    te = [r for r in records if r["split"] == "test"]
    assert [r["step"] for r in tr] == list(range(1, 3 * steps + 1))
    assert [r["epoch"] for r in te] == [0, 1, 2, 3]  # 0: before training
    for r in tr + te:  # the logged total is the spec's weighted sum of the logged terms
        assert r["loss"] == pytest.approx(25 * r["invariance"] + 25 * r["variance"] + r["covariance"], rel=1e-5)
    assert result.test == {k: te[-1][k] for k in loop_mod.TERMS}
    # the final weights carry their config and rebuild the same encoder
    with safe_open(str(run / "encoder.safetensors"), "pt") as f:
        assert Config.from_dict(json.loads(f.metadata()["config"])) == cfg
    enc, dim, cfg2 = load_encoder(run / "encoder.safetensors")
    assert cfg2 == cfg and dim == 256
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 3 * steps
    for k, v in enc.state_dict().items():
        assert torch.equal(v, ckpt["model"]["encoder." + k])


def test_resume_after_a_crash_is_bit_exact(fake_cifar_root, tmp_path, monkeypatch):
    cfg = small_config(fake_cifar_root)
    quiet = dict(progress=False, echo=lambda s: None)
    train(cfg, tmp_path / "whole", **quiet)

    # Crash in the middle of epoch 2 (after the epoch-1 checkpoint).
    real_call = loop_mod.Augment.__call__
    calls = {"n": 0}

    def crashing(self, images, generator=None):
        calls["n"] += 1
        # two views per call: test terms before training (20 test images: batches of 16 and 4),
        # epoch 1 (6 steps), test terms again, then the 3rd step of epoch 2
        if calls["n"] == 2 * 2 + 2 * (100 // 16) + 2 * 2 + 5:
            raise RuntimeError("simulated kill")
        return real_call(self, images, generator)

    monkeypatch.setattr(loop_mod.Augment, "__call__", crashing)
    with pytest.raises(RuntimeError, match="simulated kill"):
        train(cfg, tmp_path / "killed", **quiet)
    monkeypatch.setattr(loop_mod.Augment, "__call__", real_call)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"] == 1

    train(None, tmp_path / "killed", resume=True, **quiet)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the metrics log has no duplicated or lost records, and per-step learning rates survive
    whole = read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert whole == read_metrics(tmp_path / "killed" / "metrics.jsonl")
    lrs = [r["lr"] for r in whole if r["split"] == "train"]
    steps = 100 // 16  # warm-up over the first epoch: lr rises linearly to optim.lr = 1e-3
    assert lrs[:steps] == pytest.approx([1e-3 * (i + 1) / steps for i in range(steps)])
    assert lrs[steps] == pytest.approx(1e-3) and lrs[-1] < lrs[steps]
    meta = json.loads((tmp_path / "killed" / "meta.json").read_text())
    assert len(meta["resumes"]) == 1


def test_user_errors(fake_cifar_root, tmp_path):
    quiet = dict(progress=False, echo=lambda s: None)
    with pytest.raises(ViclabError, match="train.batch_size=128 is larger than the 100 training images"):
        train(small_config(fake_cifar_root, "train.batch_size=128"), tmp_path / "a", **quiet)
    run = tmp_path / "b"
    train(small_config(fake_cifar_root, "train.epochs=1"), run, **quiet)
    with pytest.raises(ViclabError, match="already exists"):
        train(small_config(fake_cifar_root, "train.epochs=1"), run, **quiet)
    with pytest.raises(ViclabError, match=r"different config \(optim.lr"):
        train(small_config(fake_cifar_root, "train.epochs=1", "optim.lr=0.5"), run, resume=True, **quiet)
    with pytest.raises(ViclabError, match="not a viclab run folder"):
        train(None, tmp_path / "nothing", resume=True, **quiet)
