"""The GPU path: training, resume, evaluation, compiled step, fused Adam, and views made on CUDA
with the same distribution and the same pixels as on the CPU. Skipped without CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from viclab.config import AugmentConfig
from viclab.core.context import Context
from viclab.engine import train
from viclab.engine.rundir import read_metrics
from viclab.engine.vicreg import make_optimizer
from viclab.views import Augment, apply_params, sample_params

from .test_train import QUIET, crash_in_epoch_2, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_trains_resumes_and_evaluates_on_cuda(fake_cifar_root, tmp_path, monkeypatch):
    from viclab.eval.tasks import run_probe

    cfg = tiny_config(fake_cifar_root, "train.device=cuda")
    run = tmp_path / "run"
    crash_in_epoch_2(monkeypatch, run, cfg)
    lines = []
    train(None, run, resume=True, ctx=Context(progress=False, echo=lines.append))
    assert any("cuda" in line and "precision" in line for line in lines)
    test = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "test"]
    assert [r["epoch"] for r in test] == [0, 1, 2] and all(math.isfinite(r["loss"]) for r in test)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["device_type"] == "cuda" and ckpt["epoch"] == 2
    probe = run_probe(run, out=tmp_path / "eval", data_dir=str(fake_cifar_root),
                      ctx=Context(False, lambda s: None))
    assert 0.0 <= probe["linear"]["top1"] <= 1.0


def test_compiled_step_trains_on_cuda(fake_cifar_root, tmp_path):
    result = train(tiny_config(fake_cifar_root, "train.device=cuda", "model.compile=true", "train.epochs=1"),
                   tmp_path / "run", **QUIET)
    assert math.isfinite(result.train["loss"]) and math.isfinite(result.test["loss"])


def test_adam_is_fused_on_cuda():
    cfg = tiny_config("/nonexistent")
    assert make_optimizer(cfg, torch.nn.Linear(3, 2, device="cuda")).defaults["fused"] is True
    assert not make_optimizer(cfg, torch.nn.Linear(3, 2)).defaults["fused"]


def test_cuda_views_have_no_host_syncs():
    aug = Augment(AugmentConfig())
    x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    aug.pair(x, gen)  # constants made once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        aug.pair(x, gen)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_cuda_views_match_the_cpu_distribution_and_pixels():
    cfg = AugmentConfig()
    n = 20_000
    cpu = sample_params(cfg, n, 32, 32, torch.Generator().manual_seed(0))
    gpu = sample_params(cfg, n, 32, 32, torch.Generator(device="cuda").manual_seed(0), "cuda")
    # Different generators, one distribution: rates and means within 5 standard errors.
    for name, p in (("flip", cfg.hflip_p), ("gray", cfg.grayscale_p), ("solarize", cfg.solarize_p)):
        a, b = getattr(cpu, name).float().mean().item(), getattr(gpu, name).float().mean().item()
        assert abs(a - b) < 5 * math.sqrt(2 * p * (1 - p) / n) + 1e-9, name
    area_cpu, area_gpu = ((p.boxes[:, 2] * p.boxes[:, 3]).float() / 1024 for p in (cpu, gpu))
    se = math.sqrt((area_cpu.var().item() + area_gpu.cpu().var().item()) / n)
    assert abs(area_cpu.mean().item() - area_gpu.mean().item()) < 5 * se
    for col in range(4):
        a, b = cpu.jitter[:, col], gpu.jitter[:, col].cpu()
        assert abs(a.mean().item() - b.mean().item()) < 5 * math.sqrt((a.var() + b.var()).item() / n)
    # The same parameters render the same pixels on both devices.
    x = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8)
    sub = type(cpu)(*(getattr(cpu, f)[:512] for f in cpu.__dataclass_fields__))
    on_gpu = type(cpu)(*(t.cuda() for t in (getattr(sub, f) for f in sub.__dataclass_fields__)))
    torch.testing.assert_close(apply_params(x.cuda(), on_gpu, cfg).cpu(), apply_params(x, sub, cfg),
                               atol=2e-4, rtol=0)
