"""VICReg training, the whole dataset (uint8 images or float log-mel spectrograms) on the device, views made there:
the objective and each ``views.kind``'s view source (:data:`VIEW_SOURCES`); the loop: :func:`viclab.engine.loop.fit`."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from viclab.config import Config
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.runtime import (
    Runtime,
    available_memory,
    broadcast_object,
    check_fits,
    get_world_size,
    init_distributed,
    is_main,
    select_runtime,
)
from viclab.data import ImageData, load_inputs
from viclab.engine import rundir
from viclab.engine.checkpoint import save_encoder
from viclab.engine.loop import BatchSource, Objective, PairForward, fit, read_checkpoint, steps_per_epoch
from viclab.engine.rundir import RunFolder
from viclab.losses import ShiftTerms, ShiftVICRegLoss, VICRegLoss, VICRegTerms, shift_prediction
from viclab.models import SHIFTS, build_model, check_inputs, check_view_size, fit_standardizers
from viclab.models.sync_bn import convert_sync_batchnorm
from viclab.views import Augment, SpecViews, view_maker
from viclab.views.images import mean_std

TERMS = VICRegTerms._fields


@dataclass(frozen=True)
class TrainResult:
    """Where the run lives and the last epoch's mean terms (train and, if evaluated, test)."""

    run_dir: Path
    train: dict[str, float]
    test: dict[str, float] | None


def make_loss(cfg: Config, **changes) -> VICRegLoss:
    return VICRegLoss(**{**dataclasses.asdict(cfg.loss), **changes})


def make_optimizer(cfg: Config, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam or AdamW per ``cfg.optim`` over ``model``'s trainable parameters (``optim.decay_norm_bias=false``:
    biases and norm weights, ``ndim <= 1``, without weight decay); on CUDA the fused kernel (no host sync)."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    fused = bool(params) and all(p.is_cuda for p in params)
    groups: list = params
    if not o.decay_norm_bias:
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return cls(groups, lr=o.lr if lr is None else lr, betas=o.betas, weight_decay=o.weight_decay,
               fused=fused or None)


@dataclass(frozen=True)
class Schedule:
    """How long a run trains, in steps: ``optim.warmup_epochs`` and ``train.epochs`` in epochs of ``steps_per_epoch``,
    each raised to its floor in steps (``optim.warmup_min_steps``, ``train.min_steps``) on small data."""

    steps_per_epoch: int
    epochs: int  # whole epochs run: train.epochs, or more to reach train.min_steps
    warmup: float  # warm-up steps (0: none)
    floors: tuple[str, ...]  # the floors that set a length, e.g. ("train.min_steps=50",)

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def schedule(cfg: Config, steps_per_epoch: int) -> Schedule:
    """The run's :class:`Schedule` at ``steps_per_epoch`` (>= 1) steps per epoch."""
    o, t = cfg.optim, cfg.train
    epochs = max(t.epochs, math.ceil(t.min_steps / steps_per_epoch))
    warm = o.warmup_epochs * steps_per_epoch
    floors = (f"train.min_steps={t.min_steps}",) if epochs > t.epochs else ()
    if 0 < warm < o.warmup_min_steps:  # a run without warm-up keeps none
        warm = float(o.warmup_min_steps)
        floors += (f"optim.warmup_min_steps={o.warmup_min_steps}",)
    return Schedule(steps_per_epoch, epochs, warm, floors)


def make_scheduler(cfg: Config, opt: torch.optim.Optimizer, plan: Schedule):
    """Per-step multiplier: linear warm-up, then constant or cosine to zero (lengths: ``plan``)."""
    warm, total = plan.warmup, plan.steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def load_split(cfg: Config, split: str, device: torch.device | str = "cpu") -> ImageData:
    """The images of a split (or a sound dataset's log-mel spectrograms, computed on ``device``)."""
    data = load_inputs(cfg.data.dataset, split, cfg.data.data_dir, cfg, device)
    return data.subset(cfg.data.subset) if split == "train" else data


def make_views(x: Tensor, augment: Augment | SpecViews, gen: torch.Generator,
               channels_last: bool = False) -> tuple[Tensor, ...]:
    """Two independent views of ``x`` (one batched call), in the model's memory format: of
    ``(B, 3, H, W)`` uint8 images, or of ``(B, 1, n_mels, T)`` log-mel spectrograms; with ``augment.local_crops``
    (multi-crop) the small views ``(m * B, 3, s, s)`` after them (:meth:`Augment.views`)."""
    views = augment.views(x, gen)
    if channels_last:
        return tuple(v.contiguous(memory_format=torch.channels_last) for v in views)
    return views


class HeldOutViews:
    """The fixed-seed pairs of views of the held-out images: every epoch's test terms see the same views.
    Kept on the device when they take at most a quarter of its free memory, else re-made from the seed."""

    def __init__(self, images: Tensor, augment: Augment | SpecViews, batch_size: int, seed: int,
                 channels_last: bool = False) -> None:
        self.images, self.augment, self.batch_size = images, augment, batch_size
        self.seed, self.channels_last = seed, channels_last
        self._kept: list[tuple[Tensor, Tensor]] | None = None

    def _make(self):  # each item: make_views' tuple
        gen = torch.Generator(device=self.images.device).manual_seed(self.seed)
        for start in range(0, len(self.images), self.batch_size):
            x = self.images[start:start + self.batch_size]
            if len(x) >= 2:  # variance is undefined on one image
                yield make_views(x, self.augment, gen, self.channels_last)

    def __iter__(self):
        if self._kept is None:
            views_bytes = len(self.images) * self.augment.views_numel(tuple(self.images.shape[1:])) * 4
            if views_bytes > available_memory(self.images.device) // 4:
                return self._make()
            self._kept = list(self._make())
        return iter(self._kept)


@torch.no_grad()
def evaluate_terms(model: nn.Module, loss_fn: VICRegLoss, views: HeldOutViews, rt: Runtime) -> dict[str, float]:
    """Mean VICReg terms over the pairs of ``views`` (eval mode), weighted by batch size."""
    was_training = model.training
    model.eval()
    sums, count = torch.zeros(len(TERMS), device=rt.device), 0
    for v in views:
        with rt.autocast():
            z = [model(x) for x in v]
        sums += torch.stack(list(loss_fn(*z))) * len(v[0])
        count += len(v[0])
    model.train(was_training)
    if count == 0:
        raise ViclabError(f"the test terms need at least 2 images, got {len(views.images)}")
    return dict(zip(TERMS, (sums / count).tolist()))


def training_bytes(model: nn.Module, cfg: Config, data: ImageData) -> int:
    """A lower bound of a training step's device memory: weights, gradients, Adam's moments, the views of a
    batch and their gradients, and the inputs."""
    params = sum(p.numel() for p in model.parameters())
    views = view_maker(data.modality, cfg).views_numel(tuple(data.images.shape[1:]))  # spectrograms: crops of clips
    return 16 * params + 2 * cfg.train.batch_size * views * 4 + data.images.numel() * data.images.element_size()


@dataclass(frozen=True)
class ViewContext:
    """What a view source is made from."""

    run: RunFolder  # a source may keep a table there (e.g. the neighbour table)
    cfg: Config
    data: ImageData  # the training data on the host
    images: Tensor  # the same on the training device: (N, 3, H, W) uint8 images or (N, 1, n_mels, T) float
    started: bool  # the run has already trained (a table it built must not change now)
    context: Context  # the run's (e.g. whether to show progress bars)


# ``ViewContext -> BatchSource`` giving ``(v1, v2)``: how a run with ``views.kind`` makes its pairs.
ViewSource = Callable[[ViewContext], BatchSource]


def augmented_views(ctx: ViewContext) -> BatchSource:
    """``views.kind = "augment"``: two independent draws of T of each image (VICReg) or spectrogram."""
    augment = view_maker(ctx.data.modality, ctx.cfg)
    return lambda idx, gen: make_views(ctx.images[idx], augment, gen, ctx.cfg.model.channels_last)


# Every views.kind and the source of its pairs; a module defining another registers it there
# (viclab.ablate.neighbours: "neighbours"), so no caller passes a source down to train().
VIEW_SOURCES: dict[str, ViewSource] = {"augment": augmented_views}


def vicreg_objective(model: nn.Module, forward: nn.Module, loss_fn: VICRegLoss,
                     optimizers: list[torch.optim.Optimizer], sched, fix: str, compile: bool = False,
                     preview: Callable[[int], dict[str, Tensor]] | None = None) -> Objective:
    """VICReg on a pair (and its small views): every view through ``forward`` (the model, or a wrapper of it), the
    loss on the projections; ``preview``: the views shown in TensorBoard each epoch (:class:`ViewPreview`)."""
    return Objective(module=PairForward(forward), loss=lambda z, _batch: loss_fn(*z), terms=TERMS, model=model,
                     optimizers=optimizers, scheduler=sched, fix=fix, compile=compile, preview=preview)


def rotate(x: Tensor, shifts: Tensor) -> Tensor:
    """``(B, C, S, S)`` square inputs, row ``i`` rotated by ``shifts[i]`` quarter turns (counter-clockwise)."""
    out = x.clone()
    for r in range(1, SHIFTS):
        rows = shifts == r
        if rows.any():
            out[rows] = torch.rot90(x[rows], r, (2, 3))
    return out


def shifted_views(ctx: ViewContext) -> BatchSource:
    """The shift objectives' batches: example ``i`` is image ``i // SHIFTS`` rotated ``i % SHIFTS`` quarter turns, a
    sample of its own. ``shift``: its two views (both of that rotation) and the rotation, ``(v1, v2, shifts)``;
    ``rotation``: one view, ``(v, shifts)``."""
    augment = view_maker(ctx.data.modality, ctx.cfg)
    pair, channels_last = ctx.cfg.train.objective == "shift", ctx.cfg.model.channels_last

    def batch(idx: Tensor, gen: torch.Generator) -> tuple[Tensor, ...]:
        shifts = idx % SHIFTS
        x = rotate(ctx.images[idx // SHIFTS], shifts)
        if pair:
            return (*make_views(x, augment, gen, channels_last)[:2], shifts)
        v = augment(x, gen)
        return (v.contiguous(memory_format=torch.channels_last) if channels_last else v), shifts

    return batch


class ShiftForward(nn.Module):
    """``(v1, v2, shifts) -> (z1, z2, logits1, logits2)``: each view through the encoder alone (BatchNorm sees each
    view by itself, as :class:`PairForward`), then the projector and the shift head; ``(v, shifts) -> logits``
    (the rotation objective: the head alone)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *batch: Tensor) -> tuple[Tensor, ...] | Tensor:
        m = self.model
        if len(batch) == 2:
            return m.shift_head(m.encoder(batch[0]))
        h1, h2 = m.encoder(batch[0]), m.encoder(batch[1])
        return m.projector(h1), m.projector(h2), m.shift_head(h1), m.shift_head(h2)


def shift_objective(model: nn.Module, cfg: Config, optimizers: list[torch.optim.Optimizer], sched, fix: str,
                    preview: Callable[[int], dict[str, Tensor]] | None = None) -> Objective:
    """``shift``: shift-aware VICReg (:class:`ShiftVICRegLoss`); ``rotation``: the shift prediction alone (RotNet,
    Gidaris et al. 2018; as an anomaly detector, Golan & El-Yaniv 2018), on :func:`shifted_views`' batches."""
    if cfg.train.objective == "rotation":
        return Objective(module=ShiftForward(model), loss=lambda out, batch: (shift_prediction(out, batch[1]),),
                         terms=("shift",), model=model, optimizers=optimizers, scheduler=sched, fix=fix,
                         compile=cfg.model.compile, preview=None)
    loss_fn = ShiftVICRegLoss(make_loss(cfg), cfg.train.shift_weight)
    return Objective(module=ShiftForward(model), loss=lambda out, batch: loss_fn(*out, batch[2]),
                     terms=ShiftTerms._fields, model=model, optimizers=optimizers, scheduler=sched, fix=fix,
                     compile=cfg.model.compile, preview=preview)


def check_shift(cfg: Config, data: ImageData) -> None:
    """The shift objectives rotate square images and make their own views of each rotated copy."""
    if cfg.train.objective == "vicreg":
        return
    _, _, h, w = data.images.shape
    objective = f"train.objective={cfg.train.objective}"
    if data.modality != "image":
        raise ViclabError(f"{objective} rotates images; for sounds use the machine_id detector, or "
                          "train.objective=vicreg")
    if h != w:
        raise ViclabError(f"{objective} rotates images by quarter turns, which needs square images; these are {h}x{w}: "
                          "resize them to a square (data.size) or use train.objective=vicreg")
    if cfg.views.kind != "augment" or cfg.augment.local_crops:
        raise ViclabError(f"{objective} makes its own views of each rotated copy; use "
                          "views.kind=augment and augment.local_crops=0")


PREVIEW_IMAGES = 8  # fixed training images whose two views TensorBoard shows each epoch


def displayable(views: Tensor, cfg: Config) -> Tensor:
    """``(N, C, H, W)`` network inputs as images in ``[0, 1]``: RGB views un-normalised, a spectrogram scaled by
    its own range."""
    x = views.detach().float()
    if x.shape[1] == 3:
        mean, std = (t.view(1, 3, 1, 1) for t in mean_std(cfg.augment, x.device))
        return (x * std + mean).clamp(0, 1)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


class ViewPreview:
    """Both views of :data:`PREVIEW_IMAGES` fixed training images, fresh each epoch, for TensorBoard: from the
    run's own batch source with a generator of their own, so the training stream (and exact resume) is untouched."""

    def __init__(self, n: int, cfg: Config, device: torch.device) -> None:
        self.idx = torch.linspace(0, n - 1, min(PREVIEW_IMAGES, n), device=device).round().long()
        self.cfg, self.device = cfg, device
        self.source: BatchSource | None = None  # set once the engine has made the batch source

    def __call__(self, epoch: int) -> dict[str, Tensor]:
        if self.source is None:
            return {}
        seed = (self.cfg.train.seed * 1_000_003 + 104_729 * epoch) % 2**63  # any train.seed
        gen = torch.Generator(device=self.device).manual_seed(seed)
        v1, v2 = self.source(self.idx, gen)[:2]
        return {"views/first": displayable(v1, self.cfg), "views/second": displayable(v2, self.cfg)}


def train(cfg: Config | None, run_dir: str | Path, resume: bool = False, ctx: Context = DEFAULT_CONTEXT,
          data: tuple[ImageData, ImageData | None] | None = None) -> TrainResult:
    """Train VICReg on the pairs of ``views.kind`` (:data:`VIEW_SOURCES`), writing everything to ``run_dir``.

    Every check of the user's input runs before the first write, ``config.json``: from then on a killed
    run is a folder that ``--resume`` continues. Under torchrun every process runs this (only rank 0 writes).

    Args:
        cfg: resolved config (``None`` when resuming: the run's saved config is used).
        run_dir: the run folder (created if needed).
        resume: continue from ``run_dir/checkpoint.pt``.
        ctx: progress bars, where the epoch lines go, the runtime (``None``: ``train.device``, ``train.precision``).
        data: ``(train, test)`` images instead of ``cfg.data``'s splits (e.g. a detector's normal images; ``test``
            ``None``: no test terms); the caller keys a resumed run to them (the folder records only the config).
    """
    run, rt = _open_run(cfg, run_dir, resume, ctx)
    cfg = run.config
    tc = cfg.train
    kind = cfg.views.kind
    if kind not in VIEW_SOURCES:
        raise ViclabError(f"views.kind={kind} has no registered view source (registered: {', '.join(VIEW_SOURCES)}); "
                          "import the module that defines it (viclab.ablate for neighbours)")
    views = VIEW_SOURCES[kind]
    torch.manual_seed(tc.seed)

    # The model first: a bad backbone/projector should fail before any data loads.
    model, _ = build_model(cfg)
    train_data, test_data = _training_data(cfg, model, data, rt)
    check_shift(cfg, train_data)
    shift = cfg.train.objective != "vicreg"
    ckpt = read_checkpoint(run, model)  # read and checked before anything is written
    images = train_data.images.to(rt.device)
    test_images = test_data.images.to(rt.device) if test_data is not None else None
    model = _place_model(model, cfg, images, ckpt is None, rt)
    n = len(images) * (SHIFTS if shift else 1)  # the shift objective's examples: every rotated copy
    opt, sched, plan = _optimisation(cfg, model, n, ctx.main_only(is_main()))
    preview = ViewPreview(len(images), cfg, rt.device)
    fix = "start a new run with a lower optim.lr or train.precision=fp32"
    objective = (shift_objective(model, cfg, [opt], sched, fix, preview) if shift else
                 vicreg_objective(model, model, make_loss(cfg), [opt], sched, fix, cfg.model.compile, preview))

    def make_batches(started: bool) -> BatchSource:
        view_ctx = ViewContext(run, cfg, train_data, images, started, ctx)
        preview.source = shifted_views(view_ctx) if shift else views(view_ctx)
        return preview.source

    result = fit(run, objective, make_batches,
                 n=n, batch_size=tc.batch_size, epochs=plan.epochs, seed=tc.seed, rt=rt, ckpt=ckpt,
                 evaluate=_evaluator(model, cfg, test_images, train_data.modality, rt), ctx=ctx)
    if is_main():
        save_encoder(run.path / rundir.ENCODER, model.encoder, cfg, model.feature_dim)
    return TrainResult(run.path, result.train, result.test)


def _open_run(cfg: Config | None, run_dir: str | Path, resume: bool, ctx: Context) -> tuple[RunFolder, Runtime]:
    """The checked run folder and the runtime (``ctx``'s, or the config's choice; the process group joined)."""
    if cfg is None and not resume:
        raise ValueError("a new run needs a config")
    tc = (cfg or rundir.read_config(Path(run_dir))).train
    rt = ctx.runtime or select_runtime(tc.device, tc.precision)
    init_distributed(rt.device)
    run_dir = Path(broadcast_object(str(run_dir)))  # one folder, even if the ranks' default names differ
    return RunFolder.open(run_dir, cfg, "resume" if resume else "new"), rt


def _training_data(cfg: Config, model: nn.Module, data: tuple[ImageData, ImageData | None] | None,
                   rt: Runtime) -> tuple[ImageData, ImageData | None]:
    """The training and (with ``train.eval_test``) test data, checked against the model, batch size and memory."""
    tc, world = cfg.train, get_world_size()
    train_data = data[0] if data is not None else load_split(cfg, "train", rt.device)
    check_inputs(cfg.model.backbone, train_data)
    if train_data.modality == "image":  # images: views of augment.size pixels
        check_view_size(model.encoder, cfg.augment.size)
    if tc.batch_size * world > len(train_data):
        per = f" x {world} processes" if world > 1 else ""
        raise ViclabError(f"train.batch_size={tc.batch_size}{per} is larger than the {len(train_data)} training "
                          f"images; use train.batch_size={len(train_data) // world} or fewer")
    test_data = (data[1] if data is not None else load_split(cfg, "test", rt.device)) if tc.eval_test else None
    if test_data is not None and len(test_data) < 2:
        warnings.warn(f"the test split holds {len(test_data)} image(s); the test terms need at least 2, so none are "
                      "logged (train.eval_test=false silences this)", ViclabWarning, stacklevel=3)
        test_data = None
    need = training_bytes(model, cfg, train_data) + (training_bytes(nn.Identity(), cfg, test_data) if test_data else 0)
    check_fits(need, rt.device, f"training {cfg.model.backbone} with projector {cfg.model.projector} on "
               f"{tuple(train_data.images.shape[1:])} inputs in batches of {tc.batch_size}",
               "use a smaller model.projector, augment.size or train.batch_size")
    return train_data, test_data


def _place_model(model: nn.Module, cfg: Config, images: Tensor, new: bool, rt: Runtime) -> nn.Module:
    """The model on the device in its memory format (synchronised BatchNorm under torchrun if asked);
    a ``new`` run's spectrogram encoder standardises by ``images``' statistics (kept as buffers)."""
    model.to(rt.device)
    if new:
        fit_standardizers(model, images)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.model.sync_bn and get_world_size() > 1:
        model = convert_sync_batchnorm(model, rt.device)
    if rt.device.type == "cuda":
        # Every step has the same shapes (partial batches are dropped): cuDNN picks each conv's kernel once.
        torch.backends.cudnn.benchmark = True
    return model


def _optimisation(cfg: Config, model: nn.Module, n: int,
                  ctx: Context) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, Schedule]:
    """The optimiser at the learning rate scaled for the world size, the schedule and its :class:`Schedule`
    for ``n`` training examples; both are described on ``ctx.echo``."""
    tc, world = cfg.train, get_world_size()
    # The global batch is train.batch_size x world: the same lr, x world (linear) or x sqrt(world) (sqrt).
    lr = cfg.optim.lr * {"none": 1.0, "linear": float(world), "sqrt": math.sqrt(world)}[cfg.optim.lr_scaling]
    if world > 1:
        ctx.echo(f"{world} processes: global batch {tc.batch_size * world}, learning rate {lr:.4g} "
                 f"(optim.lr {cfg.optim.lr:.4g}, optim.lr_scaling={cfg.optim.lr_scaling})")
    opt = make_optimizer(cfg, model, lr)
    plan = schedule(cfg, max(1, steps_per_epoch(n, tc.batch_size)))
    sched = make_scheduler(cfg, opt, plan)
    floors = f" (floor {', '.join(plan.floors)})" if plan.floors else ""
    ctx.echo(f"training {plan.epochs} epochs = {plan.steps} steps, warm-up {plan.warmup:g} steps{floors} "
             f"({plan.steps_per_epoch} per epoch of {n} examples at batch {tc.batch_size * world})")
    return opt, sched, plan


def _evaluator(model: nn.Module, cfg: Config, test_images: Tensor | None, modality: str,
               rt: Runtime) -> Callable[[], dict[str, float]] | None:
    """Rank 0's per-epoch test terms on fixed views of ``test_images`` (``None``: none) of ``modality``; none for
    the rotation objective (its projector never trains)."""
    if test_images is None or cfg.train.objective == "rotation":
        return None
    test_views = HeldOutViews(test_images, view_maker(modality, cfg), cfg.train.batch_size, cfg.train.seed + 1,
                              cfg.model.channels_last)
    # Rank 0 evaluates alone: its loss must not wait for the other ranks' batches.
    local_loss = make_loss(cfg, gather_distributed=False)
    return lambda: evaluate_terms(model, local_loss, test_views, rt)
