"""Training length and warm-up have floors in steps (a small folder is a step or two per epoch),
and a resumed run steps with its own device's optimiser kernel, not the checkpoint's (issue 24)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from viclab.config import resolve
from viclab.core.context import QUIET, Context
from viclab.engine import loop as engine
from viclab.engine.rundir import CHECKPOINT, ENCODER, METRICS
from viclab.engine.vicreg import make_optimizer, train
from viclab.models import build_vicreg_model

FLAGS = ("fused", "foreach", "capturable")  # the optimiser kernel choices


def _cfg(data, *extra: str):
    return resolve("train", "cpu", overrides=["model.projector=32-32", f"data.data_dir={data}", "train.eval_test=false",
                                            *extra])


def test_cifar10_recipes_keep_their_lengths():
    """The floors leave the published CIFAR-10 recipes as they were: 50,000 images (390 steps per epoch at
    batch 128) and the study's one-class detectors (4,500 images of a class after the 10% hold-out: 35)."""
    from viclab.engine.vicreg import schedule

    plan = schedule(resolve("train", "cpu"), 390)
    assert (plan.epochs, plan.warmup, plan.floors) == (2, 0.5 * 390, ())
    plan = schedule(resolve("train", "cpu-bf16"), 390)
    assert (plan.epochs, plan.warmup, plan.floors) == (5, 390.0, ())
    study = resolve("study", "cpu")
    plan = schedule(study.recipe, 390)
    assert (plan.epochs, plan.warmup, plan.floors) == (1, 0.5 * 390, ())
    plan = schedule(study.detect.recipe, 4_500 // 128)
    assert (plan.epochs, plan.warmup, plan.floors) == (2, pytest.approx(0.5 * 35), ())
    vit = resolve("train", "vit")
    assert schedule(vit, 390).floors == () and schedule(vit, 390).warmup == 3900
    assert schedule(resolve("train", "exercise"), 195).warmup == 0  # no warm-up stays none


def test_a_tiny_folder_trains_to_the_step_floors(tiny_run, tmp_path):
    _, data = tiny_run
    # 100 images at batch 50: 2 steps per epoch; 1 epoch with a 1-epoch warm-up would be 2 steps of warm-up.
    cfg = _cfg(data, "train.batch_size=50", "train.epochs=1", "train.min_steps=7", "optim.warmup_min_steps=4")
    lines: list[str] = []
    train(cfg, tmp_path / "r", ctx=Context(progress=False, echo=lines.append))
    records = [json.loads(line) for line in (tmp_path / "r" / METRICS).read_text().splitlines()]
    steps = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in steps] == list(range(1, 9))  # whole epochs: ceil(7 / 2) = 4 epochs = 8 steps
    assert max(r["epoch"] for r in steps) == 4
    lr = cfg.optim.lr
    # linear warm-up over 4 steps, then cosine to zero over the remaining 4 (an independent formula)
    want = [lr * (s + 1) / 4 if s < 4 else lr * 0.5 * (1 + math.cos(math.pi * (s - 4) / 4)) for s in range(8)]
    assert [r["lr"] for r in steps] == pytest.approx(want)
    assert any("training 4 epochs = 8 steps, warm-up 4 steps (floor train.min_steps=7, optim.warmup_min_steps=4)"
               in line for line in lines), lines


def test_resume_takes_the_optimizer_kernel_from_its_own_device(tiny_run, tmp_path, monkeypatch):
    _, data = tiny_run
    cfg = _cfg(data, "train.batch_size=4", "train.epochs=2")  # 25 steps per epoch, 50 in all: no floor
    run = tmp_path / "r"
    train(cfg, run, ctx=QUIET)
    # As if a CUDA run (fused Adam) was stopped after epoch 1 and now resumes on this CPU.
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    for group in ckpt["optimizers"][0]["param_groups"]:
        group.update(fused=True, foreach=False, capturable=True)
    ckpt.update(epoch=1, step=25)
    torch.save(ckpt, run / CHECKPOINT)
    (run / ENCODER).unlink()
    seen = []
    real_step = engine.train_step

    def spy(module, objective, *args, **kwargs):
        seen.append([{k: g.get(k) for k in FLAGS} for g in objective.optimizers[0].param_groups])
        return real_step(module, objective, *args, **kwargs)

    monkeypatch.setattr(engine, "train_step", spy)
    train(None, run, resume=True, ctx=QUIET)
    # What a fresh run on this device chooses (make_optimizer on CPU parameters).
    fresh = make_optimizer(cfg, build_vicreg_model(cfg.model)[0])
    own = [{k: g.get(k) for k in FLAGS} for g in fresh.param_groups]
    assert own[0]["fused"] in (None, False)  # the CPU's choice
    assert seen and all(flags == own for flags in seen), seen
    assert (run / ENCODER).exists()
