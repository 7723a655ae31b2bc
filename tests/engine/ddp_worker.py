"""One training process of the data-parallel tests (run by tests/train/test_distributed.py).

    python ddp_worker.py RUN DATA BATCH EPOCHS SYNC_BN KILL_AT_STEP|-1 [resume] [section.field=value ...]

under ``torchrun --nproc_per_node=N`` or alone. Every process sees the same fixed views
(two seeded augmentations of each image, made once), so a run of N processes with batch b
and a run of one process with batch N*b train on exactly the same global batches.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from viclab.config import resolve
from viclab.core.context import Context
from viclab.core.runtime import get_world_size, is_main
from viclab.engine import ViewContext, train
from viclab.engine.vicreg import VIEW_SOURCES
from viclab.views import Augment


def fixed_views(kill_at_step: int):
    def make(ctx: ViewContext):
        gen = torch.Generator().manual_seed(1234)  # the same on every process
        aug = Augment(ctx.cfg.augment)
        v1, v2 = aug(ctx.images, gen), aug(ctx.images, gen)
        calls = {"n": 0}
        steps_done = ctx.run.checkpoint.exists() and torch.load(ctx.run.checkpoint, weights_only=False)["step"] or 0

        def batch(idx, _gen):
            calls["n"] += 1
            if is_main() and steps_done + calls["n"] == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)  # a node lost mid-epoch
            return v1[idx], v2[idx]

        return batch

    return make


def main() -> None:
    run, data, batch, epochs, sync_bn, kill_at, *rest = sys.argv[1:]
    kill_at = int(kill_at)
    resume = "resume" in rest
    extra = [r for r in rest if "=" in r]
    torch.set_num_threads(1)
    cfg = resolve("train", "cpu", overrides=[
        "data.dataset=folder", f"data.data_dir={data}", "augment.size=16", "augment.blur_kernel=3",
        "model.backbone=small_cnn", "model.projector=32-32", "model.channels_last=false", f"model.sync_bn={sync_bn}",
        "optim.lr=1e-3", "optim.warmup_epochs=0", f"train.batch_size={batch}", f"train.epochs={epochs}",
        "train.seed=5", "train.device=cpu", "train.precision=fp32", "train.eval_test=false",
        "train.min_steps=0", *extra])  # exactly train.epochs: the step counts below are those of the epochs
    VIEW_SOURCES["augment"] = fixed_views(kill_at)  # this worker process's runs see only the fixed views
    train(None if resume else cfg, run, resume=resume,
          ctx=Context(progress=False, echo=lambda line: print(f"[world {get_world_size()}] {line}", flush=True)))


if __name__ == "__main__":
    main()
