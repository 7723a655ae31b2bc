"""The reconstruction baselines' training on the one engine: the convolutional autoencoder (images or
spectrograms) and the DCASE 2020 baseline's dense autoencoder over stacked log-mel frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from viclab.config import AutoencoderConfig, DcaseConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.runtime import Runtime
from viclab.data.types import unit_float
from viclab.engine import Objective, RunFolder, fit
from viclab.engine.loop import read_checkpoint
from viclab.losses.reconstruction import reconstruction_loss
from viclab.models import DenseAutoencoder, SpecAutoencoder, fit_standardizers, stack_frames
from viclab.models.autoencoder import build_autoencoder

CHECKPOINT_SECONDS = 30.0


def build_reconstructor(kind: str, shape: Sequence[int], ae: AutoencoderConfig, dcase: DcaseConfig) -> nn.Module:
    """An untrained reconstruction network for inputs of ``shape`` (one input's ``(C, H, W)``).

    ``kind`` ``"autoencoder"``: a convolutional autoencoder, over ``(3, S, S)`` images or
    ``(1, n_mels, frames)`` spectrograms; ``"dcase"``: the DCASE baseline over spectrograms.
    """
    c, h, w = shape
    if kind == "dcase":
        if c != 1:
            raise ViclabError("the dcase_ae detector reconstructs log-mel frames of sound; give sound clips, or use "
                              "the autoencoder detector for images")
        if w < dcase.context:
            raise ViclabError(f"the clips' spectrograms have {w} frames, fewer than dcase.context={dcase.context}; use "
                              "longer clips (sound.clip_seconds) or a smaller dcase.context")
        return DenseAutoencoder(dcase.context * h, dcase.hidden, dcase.bottleneck, dcase.depth)
    if c == 1:
        factor = 2 ** len(ae.widths)
        if h % factor:
            raise ViclabError(f"the spectrograms have {h} mel bands, not a multiple of 2**len(autoencoder.widths) = "
                              f"{factor}; use sound.n_mels={max(factor, h // factor * factor)} or fewer widths")
        return SpecAutoencoder(h, w, ae.widths, ae.latent)
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    return build_autoencoder(h, ae.widths, ae.latent)[0]


def _train(run_dir: Path, run_cfg, model: nn.Module, inputs: Tensor, loss, opt, batch: int, epochs: int, seed: int,
           rt: Runtime, fix: str, ctx: Context, modality: str) -> nn.Module:
    """Train ``model`` to reconstruct ``inputs[idx]`` (of ``modality``) from itself, in the run folder ``run_dir``."""
    run = RunFolder.open(run_dir, run_cfg, "auto")
    ckpt = read_checkpoint(run, model)
    model.to(rt.device)
    data = inputs.to(rt.device)
    if ckpt is None:
        fit_standardizers(model, data)
    if data.dim() == 4:
        model.to(memory_format=torch.channels_last)
    objective = Objective(module=model, loss=lambda out, b: (loss(b[0], out),), terms=("loss",), model=model,
                          optimizers=[opt], fix=fix)

    def batches(_started: bool):
        if data.dim() == 4:
            return lambda idx, _gen: (unit_float(data[idx], modality).contiguous(memory_format=torch.channels_last),)
        return lambda idx, _gen: (data[idx],)

    fit(run, objective, batches, n=len(data), batch_size=min(batch, len(data)), epochs=epochs, seed=seed, rt=rt,
        ckpt=ckpt, checkpoint_seconds=CHECKPOINT_SECONDS, ctx=ctx, epoch_lines=False)
    return model.eval()


def train_autoencoder(cfg: AutoencoderConfig, inputs: Tensor, run_dir: Path, rt: Runtime,
                      ctx: Context = DEFAULT_CONTEXT, *, modality: str) -> nn.Module:
    """Train the convolutional autoencoder on normal inputs of ``modality`` in the run folder ``run_dir``,
    continuing it if it holds this run: ``(N, 3, S, S)`` uint8 images (MSE on pixels in [0, 1]) or
    ``(N, 1, n_mels, frames)`` spectrograms (MSE in dB, standardised inside the network).

    The caller keys the run folder to the inputs (a detector folder records their fingerprint).
    """
    torch.manual_seed(cfg.seed)
    model = build_reconstructor("autoencoder", inputs.shape[1:], cfg, DcaseConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _train(run_dir, cfg, model, inputs, reconstruction_loss, opt, cfg.batch_size, cfg.epochs, cfg.seed, rt,
                  "start again with a lower autoencoder.lr", ctx, modality)


def train_dcase(cfg: DcaseConfig, spectrograms: Tensor, run_dir: Path, rt: Runtime,
                ctx: Context = DEFAULT_CONTEXT) -> nn.Module:
    """Train the DCASE 2020 baseline on every window of ``cfg.context`` frames of the normal clips'
    ``(N, 1, n_mels, frames)`` log-mel spectrograms (Adam, MSE), in the run folder ``run_dir``."""
    torch.manual_seed(cfg.seed)
    model = build_reconstructor("dcase", spectrograms.shape[1:], AutoencoderConfig(), cfg)
    vectors = stack_frames(spectrograms, cfg.context).flatten(0, 1).contiguous()  # (N * windows, context * n_mels)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    mse = lambda x, x_hat: (x.float() - x_hat.float()).pow(2).mean()
    return _train(run_dir, cfg, model, vectors, mse, opt, cfg.batch_size, cfg.epochs, cfg.seed, rt,
                  "start again with a lower dcase.lr", ctx, "spectrogram")
