"""The autoencoder baseline's training: an objective and a batch source for the one engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from viclab.config import AutoencoderConfig
from viclab.losses.reconstruction import reconstruction_loss
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder
from viclab.runtime import Runtime
from viclab.train import Objective, RunFolder, fit
from viclab.train.engine import read_checkpoint

CHECKPOINT_SECONDS = 30.0


def train_autoencoder(cfg: AutoencoderConfig, images: Tensor, size: int, run_dir: Path, rt: Runtime,
                      progress: bool = True, echo: Callable[[str], None] = print) -> ConvAutoencoder:
    """Train a :class:`ConvAutoencoder` on ``(N, 3, size, size)`` uint8 normal images (MSE on
    pixels in [0, 1]) in the run folder ``run_dir``, continuing it if it holds this run.

    The caller keys the run folder to the images (a detector folder records their fingerprint).
    """
    run = RunFolder.open(run_dir, cfg, "auto")
    torch.manual_seed(cfg.seed)
    model, _ = build_autoencoder(size, cfg.widths, cfg.latent)
    ckpt = read_checkpoint(run, model)
    model.to(rt.device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    objective = Objective(module=model, loss=lambda out, batch: (reconstruction_loss(batch[0], out),),
                          terms=("loss",), model=model, optimizers=[opt], fix="start again with a lower autoencoder.lr")
    data = images.to(rt.device)

    def batches(_started: bool):
        return lambda idx, _gen: (data[idx].float().div_(255).contiguous(memory_format=torch.channels_last),)

    batch = min(cfg.batch_size, len(images))
    fit(run, objective, batches, n=len(images), batch_size=batch, epochs=cfg.epochs, seed=cfg.seed, rt=rt,
        ckpt=ckpt, checkpoint_seconds=CHECKPOINT_SECONDS, progress=progress, echo=echo, epoch_lines=False)
    return model.eval()
