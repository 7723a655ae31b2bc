"""The one training loop: every objective and every batch source plugs into :func:`fit`.

An :class:`Objective` says what is optimised (VICReg on two views or free latent codes, an autoencoder's
reconstruction), a :data:`BatchSource` what each step sees (augmented views, neighbour pairs). The engine owns
the rest: device, precision, schedule, logs (JSONL, TensorBoard), progress, checkpoints, exact resume, the
non-finite guard, data parallelism.

Under torchrun a global batch is ``batch_size x world`` images: rank 0 draws one permutation per epoch,
every rank makes the inputs of its slice with its own generator stream and DDP averages the gradients.
In one process this is exactly a plain loop (rank 0's stream is the run's)."""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write
from viclab.core.runtime import (
    Runtime,
    broadcast_,
    broadcast_object,
    gather_objects,
    get_rank,
    get_world_size,
    is_main,
    mean_over_ranks,
)
from viclab.engine import rundir
from viclab.engine.checkpoint import FOREIGN_CHECKPOINT, load_checkpoint, load_state
from viclab.engine.rundir import RunFolder
from viclab.losses import VICRegTerms

LOG_FLUSH_STEPS = 50  # batch terms stay on the device this long: no per-step sync on GPU

# ``(idx (b,) int64 on the device, generator) -> the inputs of Objective.module``: a step's batch.
BatchSource = Callable[[Tensor, torch.Generator], Sequence[Any]]


@dataclass
class Objective:
    """What the engine optimises.

    Attributes:
        module: maps a batch (the source's tuple, unpacked) to outputs: a step's forward passes in one call.
        loss: ``(outputs, batch) -> terms``, scalar tensors, the first minimised (e.g. :class:`VICRegTerms`).
        terms: the names of those terms, in order (logged under these names).
        model: what checkpoints hold under ``"model"`` (no wrappers).
        optimizers: stepped together after one backward pass.
        scheduler: per-step learning-rate schedule, or ``None``.
        fix: what to do when the loss becomes non-finite (ends the error message).
        compile: ``torch.compile`` the step's forward passes and loss as one graph (batches have one shape).
        preview: ``epoch -> {tag: (N, C, H, W) images in [0, 1]}``, logged to TensorBoard after each epoch.
    """

    module: nn.Module
    loss: Callable[[Any, Sequence[Any]], Sequence[Tensor]]
    terms: tuple[str, ...]
    model: nn.Module
    optimizers: list[torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    fix: str = "start a new run with a lower learning rate"
    compile: bool = False
    preview: Callable[[int], dict[str, Tensor]] | None = None


@dataclass(frozen=True)
class FitResult:
    """The last epoch's mean terms, the test terms after it (if evaluated), and the counters."""

    train: dict[str, float]
    test: dict[str, float] | None
    epoch: int
    step: int
    seconds: float  # training time over every session of the run


class PairForward(nn.Module):
    """``(a, b, *more) -> (f(a), f(b), *f(more))``: every view in one call, each alone (BatchNorm sees each view
    by itself; the small views of multi-crop come as one tensor)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, *views: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.f(v) for v in views)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch: whole global batches of ``batch_size x world`` (the last partial one dropped)."""
    return n // (batch_size * get_world_size())


def forward_loss(module: nn.Module, objective: Objective, batch: Sequence[Any], rt: Runtime) -> Sequence[Tensor]:
    """A step's forward passes under the run's autocast, then the loss terms (their statistics in fp32)."""
    with rt.autocast():
        out = module(*batch)
    return objective.loss(out, batch)


def train_step(module: nn.Module, objective: Objective, batch: Sequence[Any], rt: Runtime,
               scaler: torch.amp.GradScaler | None = None, forward=forward_loss) -> Sequence[Tensor]:
    """One optimisation step on one batch; returns the (graph-attached) terms. ``scaler``: the fp16 loss
    scaler (absent or disabled: a plain backward and step); ``forward``: :func:`forward_loss`, maybe compiled."""
    terms = forward(module, objective, batch, rt)
    for opt in objective.optimizers:
        opt.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(terms[0]).backward()
        for opt in objective.optimizers:
            scaler.step(opt)  # skips the step if the scaled gradients overflowed
        scaler.update()
    else:
        terms[0].backward()
        for opt in objective.optimizers:
            opt.step()
    return terms


def read_checkpoint(run: RunFolder, model: nn.Module) -> dict[str, Any] | None:
    """The run's checkpoint (``None``: none), its weights loaded into ``model``; called before anything is
    written, so a damaged or foreign checkpoint stops the run with the folder untouched."""
    if not (run.resumed and run.checkpoint.exists()):
        return None
    ckpt = load_checkpoint(run.checkpoint)
    load_state(model, ckpt["model"], run.checkpoint, FOREIGN_CHECKPOINT)
    return ckpt


# Which kernel an optimiser steps with: chosen for the device a session runs on, never taken from the
# checkpoint (a CUDA run's fused=True on a CPU, or a CPU run's choice on CUDA).
KERNEL_FLAGS = ("fused", "foreach", "capturable")


def own_kernel_flags(opt: torch.optim.Optimizer, state: Any) -> Any:
    """An optimiser state dict with each param group's :data:`KERNEL_FLAGS` replaced by ``opt``'s own, so that
    loading it keeps them; a state that does not fit is returned as it is (the load explains)."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        return state
    mine = [{k: g[k] for k in KERNEL_FLAGS if k in g} for g in opt.param_groups]
    return {**state, "param_groups": [{**g, **m} if isinstance(g, dict) else g for g, m in zip(groups, mine)]}


def _stream_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """A rank's own generator seed; rank 0 of a run that never moved uses ``seed`` itself."""
    return seed if rank == 0 and epoch == 0 else seed * 1_000_003 + rank * 7919 + epoch


def _restore_streams(gen: torch.Generator, ckpt: dict[str, Any], rt: Runtime, seed: int,
                     echo: Callable[[str], None]) -> None:
    """Continue this rank's generator stream and torch's global one from the checkpoint: exactly with the same
    world size on the same device type; else (CPU and CUDA states differ) ``gen`` from a seed of (seed, rank, epoch)."""
    rank, world = get_rank(), get_world_size()
    torch_rngs = ckpt.get("torch_rngs") or [ckpt.get("torch_rng")]
    if len(torch_rngs) == world and torch_rngs[rank] is not None:
        torch.set_rng_state(torch_rngs[rank].cpu())
    states = ckpt.get("generators") or [ckpt["generator"]]
    saved_world = ckpt.get("world_size", 1)
    saved_dev = ckpt.get("device_type") or ("cuda" if states[0].numel() == 16 else "cpu")  # older: by size
    if saved_world == world and saved_dev == rt.device.type:
        try:
            gen.set_state(states[rank])
            return
        except RuntimeError:
            raise ViclabError("the checkpoint's random-generator state is damaged; start a new run") from None
    gen.manual_seed(_stream_seed(seed, rank, ckpt["epoch"] + 1))
    if saved_dev != rt.device.type:
        echo(f"note: this run's checkpoint was written on {saved_dev} and continues on {rt.device.type}; its random "
             "views continue from a new seed, so the run is not bit-identical to one that stayed on one device type")
    else:
        echo(f"note: this run's checkpoint was written by {saved_world} process(es) and continues with {world}: from "
             f"epoch {ckpt['epoch'] + 1} every global batch is {world}/{saved_world} of the earlier size and every "
             "process draws from a new seed (the run is not bit-identical to one that kept its world size)")


def fit(run: RunFolder, objective: Objective, make_batches: Callable[[bool], BatchSource], *, n: int,
        batch_size: int, epochs: int, seed: int, rt: Runtime, ckpt: dict[str, Any] | None = None,
        evaluate: Callable[[], dict[str, float]] | None = None, checkpoint_seconds: float = 0.0,
        ctx: Context = DEFAULT_CONTEXT, epoch_lines: bool = True) -> FitResult:
    """Train ``objective`` on batches of ``make_batches``, writing the run folder ``run``.

    Args:
        run: the validated run folder (:meth:`RunFolder.open`); begun here, after the checkpoint is checked.
        objective: module, loss, optimisers and schedule, on ``rt.device`` (device and precision).
        make_batches: ``started -> source``, called once the run folder exists (``started``: the run has
            already trained, so a table it built then must not change).
        n, batch_size: training examples (a batch source is dealt indices in ``[0, n)``), and per process and step.
        epochs: the run's total epochs (a resumed run continues to it).
        seed: seeds the permutations and rank 0's generator stream.
        ckpt: the run's checkpoint from :func:`read_checkpoint` (its model weights loaded).
        evaluate: rank 0's per-epoch held-out terms (``split = "test"``, also before the first epoch), or ``None``.
        checkpoint_seconds: checkpoint at an epoch's end once this long has passed since the last (0: every
            epoch); the last epoch always writes one.
        ctx: progress bars and where the lines go (only rank 0 shows or says anything).
        epoch_lines: echo one summary line per epoch.
    """
    ctx = ctx.main_only(is_main())
    gen = torch.Generator(device=rt.device).manual_seed(_stream_seed(seed, get_rank()))
    scaler = rt.grad_scaler()
    spe = steps_per_epoch(n, batch_size)
    if spe == 0:
        raise ViclabError(f"{n} training examples do not fill one global batch of {batch_size} x "
                          f"{get_world_size()} processes; use a smaller train.batch_size or fewer processes")
    epoch, step, before = _resume_optimisation(run, objective, scaler, ckpt, spe)
    run.begin(rt)
    world = get_world_size()
    ctx.echo(f"{run.path}: {rt.describe()}" + (f", {world} processes" if world > 1 else ""))
    if ckpt is not None:
        _restore_streams(gen, ckpt, rt, seed, ctx.echo)
    loop = _Loop(run, objective, rt, ctx, gen, scaler, make_batches(ckpt is not None), (n, batch_size, epochs, spe),
                 (epoch, step, before))
    loop.open_logs(resumed=ckpt is not None)
    try:
        loop.train(evaluate, checkpoint_seconds, epoch_lines)
    finally:
        loop.close_logs()
    return loop.result()


def _resume_optimisation(run: RunFolder, objective: Objective, scaler: torch.amp.GradScaler,
                         ckpt: dict[str, Any] | None, spe: int) -> tuple[int, int, float]:
    """Load the optimisers, schedule and loss scaler from ``ckpt``; returns its (epoch, step, seconds)."""
    if ckpt is None:
        return 0, 0, 0.0
    states = ckpt.get("optimizers") or [ckpt["optimizer"]]  # older single-optimiser checkpoints
    for opt, state in zip(objective.optimizers, states):
        load_state(opt, own_kernel_flags(opt, state), run.checkpoint, FOREIGN_CHECKPOINT)
    sched = objective.scheduler
    if sched is not None:
        base_lrs = list(sched.base_lrs)  # this session's (optim.lr_scaling for this world)
        sched.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    epoch = ckpt["epoch"]
    if ckpt.get("world_size", 1) != get_world_size() and sched is not None:
        # The schedule continues at the same fraction of the run, counted in the new steps.
        sched.base_lrs = base_lrs
        sched.last_epoch = epoch * spe - 1
        _advance(sched)
    return epoch, ckpt["step"], ckpt.get("seconds", 0.0)


def _advance(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """One step of the schedule, without torch's warning about its order (a step the fp16 scaler skipped
    still advances the schedule, by design)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
        scheduler.step()


class _Loop:
    """One session of a run's training: the counters, streams and logs :func:`fit` carries from step to step."""

    def __init__(self, run: RunFolder, objective: Objective, rt: Runtime, ctx: Context, gen: torch.Generator,
                 scaler: torch.amp.GradScaler, batches: BatchSource, plan: tuple[int, int, int, int],
                 counters: tuple[int, int, float]) -> None:
        self.run, self.objective, self.rt, self.ctx, self.gen = run, objective, rt, ctx, gen
        self.scaler, self.batches = scaler, batches
        self.n, self.batch_size, self.epochs, self.steps = plan
        self.epoch, self.step, self.before = counters
        self.main, self.rank, world = is_main(), get_rank(), get_world_size()
        self.global_batch = self.batch_size * world
        self.module = objective.module
        if world > 1:
            self.module = DistributedDataParallel(self.module,
                                                  device_ids=[rt.device] if rt.device.type == "cuda" else None)
        self.forward = torch.compile(forward_loss) if objective.compile else forward_loss
        self.log: rundir.MetricsLog | None = None
        self.tb = None
        self.train_means: dict[str, float] = {}
        self.test_terms: dict[str, float] | None = None
        self.rows: list[tuple[int, int, float, Tensor]] = []  # batch terms on the device until the next flush

    def open_logs(self, resumed: bool) -> None:
        """Rank 0 cuts the metrics log back to the checkpoint (``resumed``) and opens it and TensorBoard."""
        from torch.utils.tensorboard import SummaryWriter

        if self.main:
            epoch, step = self.epoch, self.step
            rundir.truncate_metrics(self.run.metrics, lambda r: (r["step"] <= step if r["split"] == "train"
                                                                 else r["epoch"] <= epoch) if resumed else False)
            self.log = rundir.MetricsLog(self.run.metrics)
            self.tb = SummaryWriter(str(self.run.path / "tb"), purge_step=step if step else None)
        self.t_start = self.last_save = time.perf_counter()

    def close_logs(self) -> None:
        if self.log is not None:
            self.log.close()
            self.tb.close()

    def train(self, evaluate: Callable[[], dict[str, float]] | None, checkpoint_seconds: float,
              epoch_lines: bool) -> None:
        """Every remaining epoch: train, evaluate, report, preview, checkpoint."""
        names, epochs = self.objective.terms, self.epochs
        if evaluate is not None and self.main and self.epoch == 0:
            self._write_test(evaluate())  # the untrained model's terms start each test curve (spec S1)
        if self.epoch >= epochs:
            self.ctx.echo(f"{self.run.path}: already trained for {epochs} epochs")
        while self.epoch < epochs:
            line = self._epoch()
            if evaluate is not None and self.main:
                self.test_terms = evaluate()
                self._write_test(self.test_terms)
                line += "  | test " + _fmt(self.test_terms, names)
            if epoch_lines:
                self.ctx.echo(line)
            self._preview()
            self._checkpoint(checkpoint_seconds)

    def _epoch(self) -> str:
        """One epoch's steps; returns its summary line."""
        from tqdm import tqdm

        names, spe = self.objective.terms, self.steps
        self.objective.module.train()
        t0 = time.perf_counter()
        perm = torch.randperm(self.n, generator=self.gen, device=self.rt.device) if self.rank == 0 \
            else torch.empty(self.n, dtype=torch.int64, device=self.rt.device)
        broadcast_(perm)  # one order for all ranks; rank 0's stream is the single-process one
        sums = torch.zeros(len(names), device=self.rt.device)
        bar = tqdm(range(spe), desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=not self.ctx.progress,
                   leave=False, dynamic_ncols=True)
        for b in bar:
            self._step(perm, b, sums, bar)
        bar.close()
        seconds = time.perf_counter() - t0
        self.train_means = dict(zip(names, (mean_over_ranks(sums) / spe).tolist()))
        self.epoch += 1
        return (f"epoch {self.epoch}/{self.epochs}  train " + _fmt(self.train_means, names)
                + f"  ({spe * self.global_batch / seconds:.0f} examples/s, {seconds:.1f}s)")

    def _step(self, perm: Tensor, b: int, sums: Tensor, bar) -> None:
        """Batch ``b`` of the epoch's permutation ``perm``: one optimisation step, its terms added to ``sums``."""
        start = b * self.global_batch + self.rank * self.batch_size
        batch = self.batches(perm[start:start + self.batch_size], self.gen)
        lr = self.objective.optimizers[0].param_groups[0]["lr"]
        terms = train_step(self.module, self.objective, batch, self.rt, self.scaler, self.forward)
        if self.objective.scheduler is not None:
            _advance(self.objective.scheduler)
        self.step += 1
        values = torch.stack([t.detach().float() for t in terms])
        sums += values
        self.rows.append((self.epoch + 1, self.step, lr, values))
        if len(self.rows) >= LOG_FLUSH_STEPS or b == self.steps - 1:
            last = self._flush()
            bar.set_postfix({_SHORT.get(k, k): f"{last[k]:.3g}" for k in self.objective.terms})

    def _flush(self) -> dict[str, float]:
        """Write the pending batch records, averaged over ranks (the global batch's terms); returns the last.
        Stops on a non-finite term (every rank checks, so all stop together)."""
        names = self.objective.terms
        values = mean_over_ranks(torch.stack([v for *_, v in self.rows])).tolist()
        records = [{"split": "train", "epoch": e, "step": s, "lr": lr, **dict(zip(names, v))}
                   for (e, s, lr, _), v in zip(self.rows, values)]
        self.rows.clear()
        for r in records:
            if not all(math.isfinite(r[k]) for k in names):
                raise ViclabError(f"the loss became non-finite at step {r['step']} of {self.run.path}; "
                                  f"{self.objective.fix}")
        if self.log is not None:
            self.log.write(records)
            for r in records:
                for k in names:
                    self.tb.add_scalar(f"train/{k}", r[k], r["step"])
        return records[-1]

    def _write_test(self, terms: dict[str, float]) -> None:
        self.log.write([{"split": "test", "epoch": self.epoch, "step": self.step, **terms}])
        for k, v in terms.items():  # an objective's test terms may be fewer (the shift objective's: VICReg's)
            self.tb.add_scalar(f"test/{k}", v, self.step)

    def _preview(self) -> None:
        if self.objective.preview is not None and self.main:
            for tag, images in self.objective.preview(self.epoch).items():
                # at the step, as the scalars: a resume purges it
                self.tb.add_images(tag, images.float().cpu(), self.step)

    def _checkpoint(self, checkpoint_seconds: float) -> None:
        """Write a checkpoint after the last epoch, or once ``checkpoint_seconds`` have passed since the last."""
        due = self.epoch == self.epochs or time.perf_counter() - self.last_save >= checkpoint_seconds
        if not broadcast_object(due):  # every rank takes part in gathering the generator states
            return
        seconds = self._seconds()
        streams = gather_objects((self.gen.get_state(), torch.get_rng_state()))  # every rank's: exact resume in any
        if self.main:
            o = self.objective
            state = {"config": dataclasses.asdict(self.run.config), "epoch": self.epoch, "step": self.step,
                     "model": o.model.state_dict(), "optimizers": [opt.state_dict() for opt in o.optimizers],
                     "scheduler": o.scheduler.state_dict() if o.scheduler is not None else None,
                     "scaler": self.scaler.state_dict(), "generator": streams[0][0],
                     "generators": [g for g, _ in streams], "torch_rng": streams[0][1],
                     "torch_rngs": [r for _, r in streams], "device_type": self.rt.device.type,
                     "world_size": get_world_size(), "seconds": seconds}
            atomic_write(self.run.checkpoint, lambda p: torch.save(state, p))
        self.last_save = time.perf_counter()

    def _seconds(self) -> float:
        return self.before + time.perf_counter() - self.t_start

    def result(self) -> FitResult:
        train_means = self.train_means
        if not train_means:  # resumed after the last epoch's checkpoint: its terms are in the log
            names = self.objective.terms
            last = [r for r in rundir.read_metrics(self.run.metrics)
                    if r["split"] == "train" and r["epoch"] == self.epoch]
            train_means = {k: float(sum(r[k] for r in last) / len(last)) for k in names} if last else {}
        return FitResult(train_means, self.test_terms, self.epoch, self.step, self._seconds())


_SHORT = {t: t[:3] for t in VICRegTerms._fields[1:]}  # inv, var, cov (the loss keeps its name)


def _fmt(terms: dict[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(f"{_SHORT.get(k, k)} {terms[k]:.4g}" for k in names if k in terms)
