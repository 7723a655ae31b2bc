"""VICReg training: the whole dataset on the device as uint8, views made there."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from viclab.augment import Augment
from viclab.config import Config
from viclab.data import ImageData, load_dataset
from viclab.errors import ViclabError, ViclabWarning
from viclab.io import check_writable_dir
from viclab.losses import VICRegLoss, VICRegTerms
from viclab.models import build_vicreg_model
from viclab.runtime import Runtime, check_fits, select_runtime
from viclab.train import rundir
from viclab.train.checkpoint import FOREIGN_CHECKPOINT, load_checkpoint, load_state, save_checkpoint, save_encoder

TERMS = ("loss", "invariance", "variance", "covariance")
LOG_FLUSH_STEPS = 50  # batch terms stay on the device this long: no per-step sync on GPU


@dataclass(frozen=True)
class TrainResult:
    """Where the run lives and the last epoch's mean terms (train and, if evaluated, test)."""

    run_dir: Path
    train: dict[str, float]
    test: dict[str, float] | None


def make_loss(cfg: Config) -> VICRegLoss:
    return VICRegLoss(**dataclasses.asdict(cfg.loss))


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def make_scheduler(cfg: Config, opt: torch.optim.Optimizer, steps_per_epoch: int):
    """Per-step multiplier: linear warm-up, then constant or cosine to zero."""
    warm = cfg.optim.warmup_epochs * steps_per_epoch
    total = cfg.train.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def load_split(cfg: Config, split: str) -> ImageData:
    data = load_dataset(cfg.data.dataset, split, cfg.data.data_dir, cfg.augment.size)
    return data.subset(cfg.data.subset) if split == "train" else data


def make_views(x: Tensor, augment: Augment, gen: torch.Generator,
               channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Two independent views of ``x`` ``(B, 3, H, W)`` uint8, in the model's memory format."""
    v1, v2 = augment(x, gen), augment(x, gen)
    if channels_last:
        v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
    return v1, v2


def train_step(forward: nn.Module, loss_fn: VICRegLoss, opt: torch.optim.Optimizer, v1: Tensor, v2: Tensor,
               rt: Runtime, scaler: torch.amp.GradScaler | None = None) -> VICRegTerms:
    """One optimisation step on a pair of views; returns the (graph-attached) terms.

    ``scaler``: the fp16 loss scaler (:meth:`Runtime.grad_scaler`); a disabled or absent one
    is a plain ``backward`` and ``step``.
    """
    with rt.autocast():
        # Two forward passes, as the reference implementation: BatchNorm sees each view alone.
        z1, z2 = forward(v1), forward(v2)
    terms = loss_fn(z1, z2)
    opt.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(terms.loss).backward()
        scaler.step(opt)  # skips the step if the scaled gradients overflowed
        scaler.update()
    else:
        terms.loss.backward()
        opt.step()
    return terms


@torch.no_grad()
def evaluate_terms(model: nn.Module, loss_fn: VICRegLoss, images: Tensor, augment: Augment, batch_size: int,
                   rt: Runtime, seed: int, channels_last: bool = False) -> dict[str, float]:
    """Mean VICReg terms over ``images`` with two fixed-seed augmented views (eval mode).

    Batches smaller than 2 are skipped (variance is undefined there).
    """
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=rt.device).manual_seed(seed)
    sums, count = torch.zeros(len(TERMS), device=rt.device), 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        if len(x) < 2:
            continue
        v1, v2 = make_views(x, augment, gen, channels_last)
        with rt.autocast():
            z1, z2 = model(v1), model(v2)
        sums += torch.stack(list(loss_fn(z1, z2))) * len(x)
        count += len(x)
    model.train(was_training)
    if count == 0:
        raise ViclabError(f"the test terms need at least 2 images, got {len(images)}")
    return dict(zip(TERMS, (sums / count).tolist()))


def _config_diff(a: Config, b: Config) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    diffs = []
    for sec in da:
        for key in da[sec]:
            if (sec, key) == ("data", "data_dir"):
                continue  # where the files are does not change the numbers
            if da[sec][key] != db[sec][key]:
                diffs.append(f"{sec}.{key}: run has {da[sec][key]!r}, asked {db[sec][key]!r}")
    return diffs


def prepare_run_dir(run_dir: Path, resume: bool, cfg: Config | None) -> Config:
    """Validate the run folder; return the config to train with. Writes nothing.

    A new run needs an absent or empty folder. A resumed run takes its saved config;
    a ``cfg`` that differs from it (other than the data location) is an error.
    """
    if resume:
        saved = rundir.read_config(run_dir)
        if cfg is not None:
            diffs = _config_diff(saved, cfg)
            if diffs:
                raise ViclabError(f"cannot resume {run_dir} with a different config ({'; '.join(diffs)}); "
                                  "drop those options or start a new run")
            saved = dataclasses.replace(saved, data=cfg.data)
        return saved
    if cfg is None:
        raise ValueError("a new run needs a config")
    check_writable_dir(run_dir, "run folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ViclabError(f"run folder {run_dir} already exists; continue it with --resume {run_dir} "
                          "or choose another --name")
    return cfg


def training_bytes(model: nn.Module, cfg: Config, images: int) -> int:
    """A lower bound of the memory a training step needs on its device: weights, gradients and
    Adam's two moments, both views of a batch and their gradients, and the uint8 images."""
    params = sum(p.numel() for p in model.parameters())
    pixels = 3 * cfg.augment.size ** 2
    return 16 * params + 2 * 2 * cfg.train.batch_size * pixels * 4 + images * pixels


def _restore_generator(gen: torch.Generator, ckpt: dict[str, Any], rt: Runtime, seed: int, echo) -> None:
    """Continue the view stream of a checkpoint, also one written on another device type.

    CPU (Mersenne Twister) and CUDA (Philox) generators have incompatible states, so a run
    resumed on the other kind of device continues from a seed derived from (seed, epoch):
    it trains correctly but is not bit-identical to a run that never moved.
    """
    state = ckpt["generator"]
    saved = ckpt.get("device_type") or ("cuda" if state.numel() == 16 else "cpu")  # older checkpoints: by size
    if saved == rt.device.type:
        try:
            gen.set_state(state)
            return
        except RuntimeError:
            raise ViclabError("the checkpoint's random-generator state is damaged; start a new run") from None
    gen.manual_seed(seed * 1_000_003 + ckpt["epoch"])
    echo(f"note: this run's checkpoint was written on {saved} and continues on {rt.device.type}; its random views "
         "continue from a new seed, so the run is not bit-identical to one that stayed on one device type")


def train(cfg: Config | None, run_dir: str | Path, resume: bool = False, progress: bool = True,
          echo=print) -> TrainResult:
    """Train VICReg, writing everything to ``run_dir``; resume from its checkpoint if asked.

    Every check that can fail on the user's input runs before the first write, and the
    first write is ``config.json``: from then on a killed run is a folder that
    ``--resume`` continues.

    Args:
        cfg: resolved config (``None`` when resuming: the run's saved config is used).
        run_dir: the run folder (created if needed).
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: show a tqdm bar per epoch.
        echo: where the one-line epoch summaries go.

    Returns:
        :class:`TrainResult`.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    run_dir = Path(run_dir)
    cfg = prepare_run_dir(run_dir, resume, cfg)
    tc = cfg.train
    rt = select_runtime(tc.device, tc.precision)
    torch.manual_seed(tc.seed)

    # The model first: a bad backbone/projector should fail before any data loads.
    model, _ = build_vicreg_model(cfg.model)
    train_data = load_split(cfg, "train")
    if tc.batch_size > len(train_data):
        raise ViclabError(f"train.batch_size={tc.batch_size} is larger than the {len(train_data)} training "
                          f"images; use train.batch_size={len(train_data)} or fewer")
    test_data = load_split(cfg, "test") if tc.eval_test else None
    if test_data is not None and len(test_data) < 2:
        warnings.warn(f"the test split holds {len(test_data)} image(s); the test terms need at least 2, so none are "
                      "logged (train.eval_test=false silences this)", ViclabWarning, stacklevel=2)
        test_data = None
    check_fits(training_bytes(model, cfg, len(train_data) + (len(test_data) if test_data else 0)), rt.device,
               f"training {cfg.model.backbone} with projector {cfg.model.projector} on {cfg.augment.size}-pixel "
               f"views in batches of {tc.batch_size}", "use a smaller model.projector, augment.size or "
               "train.batch_size")

    ckpt_path = run_dir / rundir.CHECKPOINT
    ckpt = None
    if resume and ckpt_path.exists():  # read and checked before anything is written
        ckpt = load_checkpoint(ckpt_path, keys=("config", "epoch", "step", "model", "optimizer", "scheduler",
                                                "generator", "torch_rng"))
        load_state(model, ckpt["model"], ckpt_path, FOREIGN_CHECKPOINT)
    if not resume:
        rundir.write_run_files(run_dir, cfg, rt)  # the first write: config.json
    images = train_data.images.to(rt.device)
    test_images = test_data.images.to(rt.device) if test_data is not None else None
    model.to(rt.device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.model.compile else model
    augment = Augment(cfg.augment)
    loss_fn = make_loss(cfg)
    steps_per_epoch = len(images) // tc.batch_size  # drop the last partial batch
    opt = make_optimizer(cfg, model.parameters())
    sched = make_scheduler(cfg, opt, steps_per_epoch)
    scaler = rt.grad_scaler()
    gen = torch.Generator(device=rt.device).manual_seed(tc.seed)
    epoch, step = 0, 0
    if ckpt is not None:
        # After model.to: the optimiser's state follows its parameters' device.
        load_state(opt, ckpt["optimizer"], ckpt_path, FOREIGN_CHECKPOINT)
        sched.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        _restore_generator(gen, ckpt, rt, tc.seed, echo)
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        epoch, step = ckpt["epoch"], ckpt["step"]
    if resume:
        rundir.write_run_files(run_dir, cfg, rt, resumed=True)
    echo(f"{run_dir}: {rt.describe()}")
    pairs = _pair_maker(cfg, run_dir, train_data, images, augment, progress, started=ckpt is not None)
    if ckpt is not None:
        rundir.truncate_metrics(run_dir / rundir.METRICS,
                                lambda r: r["step"] <= step if r["split"] == "train" else r["epoch"] <= epoch)
    else:
        rundir.truncate_metrics(run_dir / rundir.METRICS, lambda r: False)
    log = rundir.MetricsLog(run_dir / rundir.METRICS)
    tb = SummaryWriter(str(run_dir / "tb"), purge_step=step if step else None)
    batch_log = _BatchLog(log, tb, run_dir)

    train_means: dict[str, float] = {}
    test_terms: dict[str, float] | None = None
    try:
        if test_images is not None and epoch == 0:
            # The untrained model's test terms start each test curve (spec S1: once per epoch).
            start = evaluate_terms(model, loss_fn, test_images, augment, tc.batch_size, rt, seed=tc.seed + 1,
                                   channels_last=cfg.model.channels_last)
            log.write([{"split": "test", "epoch": 0, "step": 0, **start}])
            for k in TERMS:
                tb.add_scalar(f"test/{k}", start[k], 0)
        if epoch >= tc.epochs:
            echo(f"{run_dir}: already trained for {tc.epochs} epochs")
        while epoch < tc.epochs:
            model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(len(images), generator=gen, device=rt.device)
            sums = torch.zeros(len(TERMS), device=rt.device)
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not progress,
                       leave=False, dynamic_ncols=True)
            for b in bar:
                idx = perm[b * tc.batch_size:(b + 1) * tc.batch_size]
                v1, v2 = pairs(idx, gen)
                lr = opt.param_groups[0]["lr"]
                terms = train_step(forward, loss_fn, opt, v1, v2, rt, scaler)
                with warnings.catch_warnings():
                    # A step the fp16 scaler skipped (inf gradients) still advances the schedule, by design.
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                    sched.step()
                step += 1
                values = torch.stack([t.detach() for t in terms])
                sums += values
                batch_log.add(epoch + 1, step, lr, values)
                if batch_log.full() or b == steps_per_epoch - 1:
                    last = batch_log.flush()
                    bar.set_postfix({_SHORT[k]: f"{last[k]:.3g}" for k in TERMS})
            bar.close()
            seconds = time.perf_counter() - t0
            train_means = dict(zip(TERMS, (sums / steps_per_epoch).tolist()))
            epoch += 1
            line = (f"epoch {epoch}/{tc.epochs}  train " + _fmt(train_means)
                    + f"  ({steps_per_epoch * tc.batch_size / seconds:.0f} img/s, {seconds:.1f}s)")
            if test_images is not None:
                test_terms = evaluate_terms(model, loss_fn, test_images, augment, tc.batch_size, rt,
                                            seed=tc.seed + 1, channels_last=cfg.model.channels_last)
                log.write([{"split": "test", "epoch": epoch, "step": step, **test_terms}])
                for k in TERMS:
                    tb.add_scalar(f"test/{k}", test_terms[k], step)
                line += "  | test " + _fmt(test_terms)
            echo(line)
            save_checkpoint(ckpt_path, {
                "config": cfg.to_dict(), "epoch": epoch, "step": step, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "generator": gen.get_state(), "device_type": rt.device.type, "torch_rng": torch.get_rng_state(),
            })
        save_encoder(run_dir / rundir.ENCODER, model.encoder, cfg, model.feature_dim)
    finally:
        log.close()
        tb.close()
    return TrainResult(run_dir, train_means, test_terms)


def _pair_maker(cfg: Config, run_dir: Path, train_data: ImageData, images: Tensor, augment: Augment,
                progress: bool, started: bool):
    """``(idx (B,), gen) -> (v1, v2)``: two augmented views, or an image and a neighbour (spec S6)."""
    if cfg.views.kind == "neighbours":
        from viclab.ablate.neighbours import NeighbourPairs, neighbour_table

        table = torch.from_numpy(neighbour_table(run_dir, cfg, train_data, progress, started)).to(images.device)
        return NeighbourPairs(images, table, cfg.augment, cfg.model.channels_last)
    return lambda idx, gen: make_views(images[idx], augment, gen, cfg.model.channels_last)


class _BatchLog:
    """Per-batch terms kept on the device and written in chunks (no per-step GPU sync)."""

    def __init__(self, log: rundir.MetricsLog, tb, run_dir: Path) -> None:
        self.log, self.tb, self.run_dir = log, tb, run_dir
        self.rows: list[tuple[int, int, float, Tensor]] = []

    def add(self, epoch: int, step: int, lr: float, values: Tensor) -> None:
        self.rows.append((epoch, step, lr, values))

    def full(self) -> bool:
        return len(self.rows) >= LOG_FLUSH_STEPS

    def flush(self) -> dict[str, float]:
        """Write the pending records; returns the last one. Stops on a non-finite loss."""
        values = torch.stack([v for *_, v in self.rows]).tolist()
        records = [{"split": "train", "epoch": e, "step": s, "lr": lr, **dict(zip(TERMS, v))}
                   for (e, s, lr, _), v in zip(self.rows, values)]
        self.rows.clear()
        _check_finite(records, self.run_dir)
        self.log.write(records)
        for r in records:
            for k in TERMS:
                self.tb.add_scalar(f"train/{k}", r[k], r["step"])
        return records[-1]


_SHORT = {"loss": "loss", "invariance": "inv", "variance": "var", "covariance": "cov"}


def _fmt(terms: dict[str, Any]) -> str:
    return " ".join(f"{_SHORT[k]} {terms[k]:.4g}" for k in TERMS)


def _check_finite(records: list[dict[str, Any]], run_dir: Path) -> None:
    for r in records:
        if not all(math.isfinite(r[k]) for k in TERMS):
            raise ViclabError(f"the loss became non-finite at step {r['step']} of {run_dir}; "
                              "start a new run with a lower optim.lr or train.precision=fp32")
