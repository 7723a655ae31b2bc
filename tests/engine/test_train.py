"""Training: run folder contents, logged terms, bit-exact resume, user errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors import safe_open

from viclab.config import Config, resolve
from viclab.core.context import QUIET as QUIET_CTX
from viclab.core.context import Context
from viclab.core.errors import ViclabError
from viclab.engine import loop as engine_mod
from viclab.engine import train
from viclab.engine import vicreg as loop_mod
from viclab.engine.checkpoint import load_encoder
from viclab.engine.rundir import read_metrics
from viclab.engine.vicreg import PREVIEW_IMAGES

SMALL = ["model.backbone=small_cnn", "model.projector=64-64", "train.batch_size=16", "train.epochs=3",
         "optim.name=adamw", "optim.lr=1e-3", "optim.schedule=cosine", "optim.warmup_epochs=1",
         "train.min_steps=0"]  # exact epochs (the step floor has its own tests)


def small_config(root, *extra):
    return resolve("train", "cpu", overrides=[*SMALL, f"data.data_dir={root}", *extra])


def test_run_folder_and_metrics(fake_cifar_root, tmp_path):
    cfg = small_config(fake_cifar_root)
    run = tmp_path / "run"
    result = train(cfg, run, ctx=QUIET_CTX)
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
    quiet = dict(ctx=QUIET_CTX)
    train(cfg, tmp_path / "whole", **quiet)

    # Crash in the middle of epoch 2 (after the epoch-1 checkpoint).
    real_call = loop_mod.Augment.__call__
    calls = {"n": 0}

    def crashing(self, images, generator=None):
        calls["n"] += 1
        # both views of a batch per call: the test views, made once (20 test images: batches of 16
        # and 4), epoch 1 (6 steps), then the 3rd step of epoch 2
        if calls["n"] == 2 + (100 // 16) + 3:
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
    quiet = dict(ctx=QUIET_CTX)
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


TINY = ["model.backbone=small_cnn", "model.projector=32-32", "train.batch_size=20", "train.epochs=2",
        "optim.name=adamw", "optim.lr=1e-3", "train.min_steps=0"]  # exact epochs, no step floor
QUIET = dict(ctx=QUIET_CTX)


def tiny_config(root, *extra):
    return resolve("train", "cpu", overrides=[*TINY, f"data.data_dir={root}", *extra])


def crash_in_epoch_2(monkeypatch, run, cfg, steps_before: int = 7):
    """Train ``cfg`` into ``run`` and kill it (KeyboardInterrupt) at a step of epoch 2."""
    real_step, calls = engine_mod.train_step, {"n": 0}

    def step(*a, **k):
        calls["n"] += 1
        if calls["n"] > steps_before:
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(engine_mod, "train_step", step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, **QUIET)
    monkeypatch.setattr(engine_mod, "train_step", real_step)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1


def assert_same_weights(a, b):
    sa, sb = (torch.load(p / "checkpoint.pt", weights_only=True)["model"] for p in (a, b))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_drops_a_half_written_metrics_line_and_stale_temp_files(fake_cifar_root, tmp_path, monkeypatch):
    cfg = tiny_config(fake_cifar_root)
    train(cfg, tmp_path / "whole", **QUIET)
    run = tmp_path / "killed"
    crash_in_epoch_2(monkeypatch, run, cfg)
    with open(run / "metrics.jsonl", "a") as f:  # what a kill in the middle of a write leaves
        f.write('{"split": "train", "epoch": 2, "st')
    orphan = run / ".checkpoint.pt.k3j2h1.tmp"  # a checkpoint write killed before its rename
    orphan.write_bytes(b"\0" * 1000)
    train(None, run, resume=True, **QUIET)
    assert not orphan.exists()
    assert read_metrics(run / "metrics.jsonl") == read_metrics(tmp_path / "whole" / "metrics.jsonl")
    assert_same_weights(run, tmp_path / "whole")


def test_resume_from_a_checkpoint_written_on_another_device_type(fake_cifar_root, tmp_path, monkeypatch):
    cfg = tiny_config(fake_cifar_root)
    run = tmp_path / "moved"
    crash_in_epoch_2(monkeypatch, run, cfg)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    # A CUDA generator's state is 16 bytes (Philox seed and offset); a CPU one is 5,056.
    ckpt["generator"] = torch.zeros(16, dtype=torch.uint8)
    for key in ("device_type", "generators"):  # an older checkpoint: one generator, no device type
        ckpt.pop(key, None)
    torch.save(ckpt, run / "checkpoint.pt")
    lines = []
    train(None, run, resume=True, ctx=Context(progress=False, echo=lines.append))
    assert any("written on cuda and continues on cpu" in line for line in lines)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert (run / "encoder.safetensors").exists()


def test_checkpoint_of_another_model_is_one_clear_error(fake_cifar_root, tmp_path, monkeypatch):
    run = tmp_path / "a"
    crash_in_epoch_2(monkeypatch, run, tiny_config(fake_cifar_root))
    other = tmp_path / "b"
    train(tiny_config(fake_cifar_root, "model.projector=64-64", "train.epochs=1"), other, **QUIET)
    (run / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    with pytest.raises(ViclabError, match="does not fit this model .*size mismatch.*delete it"):
        train(None, run, resume=True, **QUIET)
    (run / "checkpoint.pt").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(ViclabError, match="cannot read checkpoint") as e:
        train(None, run, resume=True, **QUIET)
    assert "weights_only" not in str(e.value)


def test_full_disk_during_a_checkpoint_keeps_the_last_good_one(fake_cifar_root, tmp_path, monkeypatch):
    import errno

    run = tmp_path / "full"
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the epoch-2 checkpoint: half written, then the disk is full
            open(f, "wb").write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(ViclabError, match="no space left on the device .*the previous checkpoint.pt is kept"):
        train(tiny_config(fake_cifar_root), run, **QUIET)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    train(None, run, resume=True, **QUIET)  # and the run continues from it
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_run_killed_at_its_start_can_be_resumed(tiny_run, tmp_path, monkeypatch):
    """A neighbour-view run spends its first minutes encoding with the source model; a kill
    there must leave a folder that --resume accepts (the config is the first file written)."""
    from viclab.ablate import neighbours as nb_mod
    from viclab.ablate.neighbours import neighbours_config
    from viclab.engine.vicreg import VIEW_SOURCES

    src, root = tiny_run
    cfg = neighbours_config(str(src), k=3, epochs=1)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=str(root)))

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(nb_mod, "knn_table", killed)
    run = tmp_path / "nbrs"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, **QUIET)
    monkeypatch.undo()
    with pytest.raises(ViclabError, match="already exists; continue it with --resume"):
        train(cfg, run, **QUIET)
    with monkeypatch.context() as m:  # a kind whose module never registered its source is named, not guessed
        m.delitem(VIEW_SOURCES, "neighbours")
        with pytest.raises(ViclabError, match=r"views.kind=neighbours has no registered view source \(registered: "
                                              r"augment\)"):
            train(None, run, resume=True, **QUIET)
    train(None, run, resume=True, **QUIET)
    assert (run / "encoder.safetensors").exists() and (run / "neighbours.npy").exists()


@pytest.mark.filterwarnings("ignore:.*a partial CIFAR-10 split")
def test_test_split_too_small_for_the_terms_is_not_logged_as_zero(tmp_path):
    from tests.conftest import write_fake_cifar

    write_fake_cifar(tmp_path, n_test=1)
    with pytest.warns(UserWarning, match="test split holds 1 image"):
        train(tiny_config(tmp_path, "train.epochs=1"), tmp_path / "r", **QUIET)
    assert [r for r in read_metrics(tmp_path / "r" / "metrics.jsonl") if r["split"] == "test"] == []


def test_fp16_trains_with_a_gradient_scaler_and_logs_its_precision(fake_cifar_root, tmp_path):
    lines = []
    # CPUs have no fast fp16 kernels: a few tiny steps (8-pixel views, 2 batches of 10) keep this quick
    train(tiny_config(fake_cifar_root, "train.precision=fp16", "train.epochs=1", "augment.size=8", "data.subset=20",
                      "train.batch_size=10", "train.eval_test=false"), tmp_path / "h",
          ctx=Context(progress=False, echo=lines.append))
    ckpt = torch.load(tmp_path / "h" / "checkpoint.pt", weights_only=True)
    assert ckpt["scaler"]["scale"] > 1  # the loss was scaled (an unscaled fp16 step has no scaler state)
    assert any("precision fp16 (asked for)" in line for line in lines)
    meta = json.loads((tmp_path / "h" / "meta.json").read_text())
    assert meta["precision"] == {"name": "fp16", "why": "asked for"} and meta["kind"] == "train"
    records = read_metrics(tmp_path / "h" / "metrics.jsonl")
    assert all(math.isfinite(r["loss"]) for r in records)


@pytest.mark.parametrize("capability,dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                              ((9, 0), torch.bfloat16)])
def test_auto_precision_on_cuda_follows_the_compute_capability(monkeypatch, capability, dtype):
    """bf16 only where the GPU computes it natively (compute capability >= 8.0), else fp16 with a scaler."""
    from viclab.core.runtime import select_runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    rt = select_runtime("auto", "auto")
    assert rt.device.type == "cuda" and rt.autocast_dtype == dtype
    assert f"compute capability {capability[0]}.{capability[1]}" in rt.reason


@pytest.mark.parametrize("amx,avx512_bf16,dtype", [(False, False, None), (False, True, torch.bfloat16),
                                                   (True, False, torch.bfloat16), (True, True, torch.bfloat16)])
def test_auto_precision_on_the_cpu_follows_its_bf16_instructions(monkeypatch, amx, avx512_bf16, dtype):
    """bf16 autocast on a CPU with AMX or avx512_bf16 (oneDNN runs bf16 natively there), fp32 elsewhere;
    an explicit precision is always obeyed."""
    from viclab.core.runtime import select_runtime

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    rt = select_runtime("cpu", "auto")
    assert rt.autocast_dtype == dtype
    assert ("natively" in rt.reason) == (dtype is not None)
    assert select_runtime("cpu", "fp32").autocast_dtype is None


def test_auto_precision_matches_the_cpu_flags_the_kernel_reports():
    """Independent of torch's detection: /proc/cpuinfo's flags decide what auto must pick here."""
    from viclab.core.runtime import select_runtime

    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo")
    native = bool({"avx512_bf16", "amx_tile"} & flags)
    assert (select_runtime("cpu", "auto").autocast_dtype == torch.bfloat16) == native


def test_latent_run_folder_is_not_resumed_as_a_training_run(tmp_path, fake_cifar_root):
    from viclab.ablate.latent import run_latent
    from viclab.config import LatentConfig

    run_latent(LatentConfig(pairs="naive", data_dir=str(fake_cifar_root), dim=8, projector="16-16", batch_size=20,
                            epochs=1), tmp_path / "lat", ctx=QUIET_CTX)
    with pytest.raises(ViclabError, match="is a latent-optimisation run: continue it with 'viclab ablate latent"):
        train(None, tmp_path / "lat", resume=True, **QUIET)


def test_held_out_views_are_made_once_per_run_and_give_the_same_terms(fake_cifar_root, tmp_path, monkeypatch):
    """The fixed-seed test views are rendered once, not once per epoch; kept or re-made, the terms agree."""
    from viclab.views import Augment

    real_pair, sizes = Augment.pair, []

    def pair(self, images, gen=None):
        sizes.append(len(images))
        return real_pair(self, images, gen)

    monkeypatch.setattr(Augment, "pair", pair)
    cfg = tiny_config(fake_cifar_root, "train.epochs=3")
    train(cfg, tmp_path / "kept", **QUIET)
    steps = 3 * (100 // 20)  # fake CIFAR: 100 training images, batches of 20
    test_batches = 1  # 20 test images: one batch
    previews = [PREVIEW_IMAGES] * 3  # TensorBoard's views of the fixed training images, once per epoch
    assert sorted(sizes) == sorted([20] * (steps + test_batches) + previews)
    # Re-made every time when they do not fit: more renders, the same logged test terms.
    monkeypatch.setattr(loop_mod, "available_memory", lambda device: 0)
    sizes.clear()
    train(cfg, tmp_path / "remade", **QUIET)
    # before training and after each of 3 epochs
    assert sorted(sizes) == sorted([20] * (steps + 4 * test_batches) + previews)
    kept, remade = ([r for r in read_metrics(tmp_path / d / "metrics.jsonl") if r["split"] == "test"]
                    for d in ("kept", "remade"))
    assert [r["loss"] for r in kept] == [r["loss"] for r in remade] and len(kept) == 4


def test_multi_crop_training_logs_the_multi_crop_loss(fake_cifar_root, tmp_path):
    cfg = small_config(fake_cifar_root, "augment.local_crops=2", "augment.local_size=16", "train.epochs=1")
    train(cfg, tmp_path / "run", ctx=QUIET_CTX)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert records and all(math.isfinite(r["loss"]) for r in records)
    for r in records:
        assert r["loss"] == pytest.approx(25 * r["invariance"] + 25 * r["variance"] + r["covariance"], rel=1e-5)


def test_small_views_too_small_for_the_blur_are_refused(fake_cifar_root):
    with pytest.raises(ViclabError, match="too large for 2-pixel views"):
        small_config(fake_cifar_root, "augment.local_crops=2", "augment.local_size=2", "augment.blur_p=0.5",
                     "augment.blur_kernel=5")
