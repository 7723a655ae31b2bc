"""The one training loop: every objective and every batch source plugs into :func:`fit`.

An :class:`Objective` says what is optimised (VICReg on two views, VICReg on free latent
codes, an autoencoder's reconstruction); a :data:`BatchSource` says what each step sees
(augmented views, neighbour pairs, graph pairs). The engine alone owns the rest: device
and precision, optimisers and schedule, per-batch and per-epoch logging (JSONL and
TensorBoard), progress, checkpoints, exact resume, the non-finite guard, and data
parallelism under torchrun.

Data parallelism: a global batch is ``batch_size x world`` images. Rank 0 draws one
permutation per epoch and every rank is dealt its ``batch_size`` slice of each global
batch, from which it makes its inputs with its own generator stream; DDP averages the
gradients. In one process this is exactly a plain loop (rank 0's stream is the run's).
"""

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

from viclab.core.errors import ViclabError
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
from viclab.engine.checkpoint import FOREIGN_CHECKPOINT, load_checkpoint, load_state, save_checkpoint
from viclab.engine.rundir import RunFolder

LOG_FLUSH_STEPS = 50  # batch terms stay on the device this long: no per-step sync on GPU

# ``(idx (b,) int64 on the device, generator) -> the inputs of Objective.module``: a step's batch.
BatchSource = Callable[[Tensor, torch.Generator], Sequence[Any]]


@dataclass
class Objective:
    """What the engine optimises.

    Attributes:
        module: maps a batch (the source's tuple, unpacked) to outputs; all forward passes of
            a step happen in its one call (what DDP wraps).
        loss: ``(outputs, batch) -> terms``, a tuple of scalar tensors, the first the loss
            minimised (e.g. :class:`~viclab.losses.VICRegTerms`).
        terms: the names of those terms, in order (logged under these names).
        model: what checkpoints hold under ``"model"`` (no wrappers).
        optimizers: stepped together after one backward pass.
        scheduler: per-step learning-rate schedule, or ``None``.
        fix: what to do when the loss becomes non-finite (ends the error message).
        compile: compile the step's forward passes and loss together with ``torch.compile``
            (one graph; the engine's batches have one static shape, the last partial one dropped).
        preview: ``epoch -> {tag: (N, C, H, W) images in [0, 1]}``, logged to TensorBoard after
            each epoch at its last step (e.g. both views of a few fixed images), or ``None``.
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
    """``(a, b) -> (f(a), f(b))``: both views through ``f`` in one call, each alone (BatchNorm
    sees each view by itself, as in the reference implementation)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return self.f(a), self.f(b)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps per epoch: whole global batches of ``batch_size x world`` (the last partial one dropped)."""
    return n // (batch_size * get_world_size())


def forward_loss(module: nn.Module, objective: Objective, batch: Sequence[Any], rt: Runtime) -> Sequence[Tensor]:
    """A step's forward passes under the run's autocast, then the loss terms (which compute
    their statistics in fp32 themselves)."""
    with rt.autocast():
        out = module(*batch)
    return objective.loss(out, batch)


def train_step(module: nn.Module, objective: Objective, batch: Sequence[Any], rt: Runtime,
               scaler: torch.amp.GradScaler | None = None, forward=forward_loss) -> Sequence[Tensor]:
    """One optimisation step on one batch; returns the (graph-attached) terms.

    ``scaler``: the fp16 loss scaler (:meth:`Runtime.grad_scaler`); a disabled or absent one
    is a plain ``backward`` and ``step``. ``forward``: :func:`forward_loss` or its compiled form.
    """
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
    """The run's checkpoint, read and its weights loaded into ``model``; ``None``
    for a run without one. Called before anything is written, so a damaged or foreign
    checkpoint stops the run with the folder untouched."""
    if not (run.resumed and run.checkpoint.exists()):
        return None
    ckpt = load_checkpoint(run.checkpoint, keys=("config", "epoch", "step", "model"))
    load_state(model, ckpt["model"], run.checkpoint, FOREIGN_CHECKPOINT)
    return ckpt


# Which kernel an optimiser steps with: chosen for the device a session runs on, never taken from the
# checkpoint (a CUDA run's fused=True on a CPU, or a CPU run's choice on CUDA).
KERNEL_FLAGS = ("fused", "foreach", "capturable")


def own_kernel_flags(opt: torch.optim.Optimizer, state: Any) -> Any:
    """An optimiser state dict with each param group's :data:`KERNEL_FLAGS` replaced by ``opt``'s own
    (what this session chose for its device), so that loading it keeps them; also places the step
    counters where those flags want them. A state that does not fit is returned as it is (the load
    then explains the mismatch)."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        return state
    mine = [{k: g[k] for k in KERNEL_FLAGS if k in g} for g in opt.param_groups]
    return {**state, "param_groups": [{**g, **m} if isinstance(g, dict) else g for g, m in zip(groups, mine)]}


def _stream_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """A rank's own generator seed; rank 0 of a run that never moved uses ``seed`` itself."""
    return seed if rank == 0 and epoch == 0 else seed * 1_000_003 + rank * 7919 + epoch


def _restore_streams(gen: torch.Generator, ckpt: dict[str, Any], rt: Runtime, seed: int, echo) -> None:
    """Continue this rank's generator stream from the checkpoint.

    Exact when the run resumes with the same world size on the same device type. Otherwise
    (the documented rule) every rank continues from a seed derived from (seed, rank, epoch):
    the run trains correctly from the last completed epoch but is not bit-identical to one
    that never changed. CPU (Mersenne Twister) and CUDA (Philox) states are incompatible.
    """
    rank, world = get_rank(), get_world_size()
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
        progress: bool = True, echo: Callable[[str], None] = print, epoch_lines: bool = True) -> FitResult:
    """Train ``objective`` on batches of ``make_batches``, writing the run folder ``run``.

    Args:
        run: the validated run folder (:meth:`RunFolder.open`); :meth:`RunFolder.begin` is
            called here, after the checkpoint has been read and checked.
        objective: module, loss, optimisers and schedule, on ``rt.device``.
        make_batches: ``started -> source``, called once the run folder exists; ``started``
            says the run has already trained (a table it built then must not change).
        n: training examples; a batch source is dealt indices in ``[0, n)``.
        batch_size: examples per process and step.
        epochs: the run's total epochs (a resumed run continues to it).
        seed: seeds the permutations and rank 0's generator stream.
        rt: device and precision.
        ckpt: the run's checkpoint from :func:`read_checkpoint` (its model weights loaded).
        evaluate: rank 0's per-epoch held-out terms (logged as ``split = "test"``, also
            before the first epoch), or ``None``.
        checkpoint_seconds: write a checkpoint at the end of an epoch once this long has passed
            since the last one (0: every epoch); the last epoch always writes one.
        epoch_lines: echo one summary line per epoch.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    rank, world, main = get_rank(), get_world_size(), is_main()
    say = echo if main else (lambda _line: None)
    names = objective.terms
    gen = torch.Generator(device=rt.device).manual_seed(_stream_seed(seed, rank))
    scaler = rt.grad_scaler()
    spe = steps_per_epoch(n, batch_size)
    if spe == 0:
        raise ViclabError(f"{n} training examples do not fill one global batch of {batch_size} x {world} processes; "
                          "use a smaller train.batch_size or fewer processes")
    epoch, step, before = 0, 0, 0.0
    if ckpt is not None:
        states = ckpt.get("optimizers") or [ckpt["optimizer"]]  # older single-optimiser checkpoints
        for opt, state in zip(objective.optimizers, states):
            load_state(opt, own_kernel_flags(opt, state), run.checkpoint, FOREIGN_CHECKPOINT)
        if objective.scheduler is not None:
            base_lrs = list(objective.scheduler.base_lrs)  # this session's (optim.lr_scaling for this world)
            objective.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        epoch, step, before = ckpt["epoch"], ckpt["step"], ckpt.get("seconds", 0.0)
        if ckpt.get("world_size", 1) != world and objective.scheduler is not None:
            # The schedule continues at the same fraction of the run, counted in the new steps.
            objective.scheduler.base_lrs = base_lrs
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                objective.scheduler.last_epoch = epoch * spe - 1
                objective.scheduler.step()
    run.begin(rt)
    say(f"{run.path}: {rt.describe()}" + (f", {world} processes" if world > 1 else ""))
    if ckpt is not None:
        _restore_streams(gen, ckpt, rt, seed, say)
        rng = ckpt.get("torch_rngs") or [ckpt.get("torch_rng")]
        if len(rng) == world and rng[rank] is not None:
            torch.set_rng_state(rng[rank].cpu())
    batches = make_batches(ckpt is not None)
    module = objective.module
    if world > 1:
        module = DistributedDataParallel(module, device_ids=[rt.device] if rt.device.type == "cuda" else None)
    forward = torch.compile(forward_loss) if objective.compile else forward_loss
    log = tb = None
    if main:
        rundir.truncate_metrics(run.metrics, lambda r: (r["step"] <= step if r["split"] == "train"
                                                        else r["epoch"] <= epoch) if ckpt is not None else False)
        log = rundir.MetricsLog(run.metrics)
        tb = SummaryWriter(str(run.path / "tb"), purge_step=step if step else None)
    batch_log = _BatchLog(log, tb, names, run, objective.fix)
    train_means: dict[str, float] = {}
    test_terms: dict[str, float] | None = None
    t_start = last_save = time.perf_counter()
    global_batch = batch_size * world

    def write_test(terms: dict[str, float]) -> None:
        log.write([{"split": "test", "epoch": epoch, "step": step, **terms}])
        for k in names:
            tb.add_scalar(f"test/{k}", terms[k], step)

    try:
        if evaluate is not None and main and epoch == 0:
            write_test(evaluate())  # the untrained model's terms start each test curve (spec S1)
        if epoch >= epochs:
            say(f"{run.path}: already trained for {epochs} epochs")
        while epoch < epochs:
            objective.module.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=gen, device=rt.device) if rank == 0 \
                else torch.empty(n, dtype=torch.int64, device=rt.device)
            broadcast_(perm)  # one order for all ranks; rank 0's stream is the single-process one
            sums = torch.zeros(len(names), device=rt.device)
            bar = tqdm(range(spe), desc=f"epoch {epoch + 1}/{epochs}", disable=not (progress and main), leave=False,
                       dynamic_ncols=True)
            for b in bar:
                start = b * global_batch + rank * batch_size
                batch = batches(perm[start:start + batch_size], gen)
                lr = objective.optimizers[0].param_groups[0]["lr"]
                terms = train_step(module, objective, batch, rt, scaler, forward)
                if objective.scheduler is not None:
                    with warnings.catch_warnings():
                        # A step the fp16 scaler skipped (inf gradients) still advances the schedule, by design.
                        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
                        objective.scheduler.step()
                step += 1
                values = torch.stack([t.detach().float() for t in terms])
                sums += values
                batch_log.add(epoch + 1, step, lr, values)
                if batch_log.full() or b == spe - 1:
                    last = batch_log.flush()
                    bar.set_postfix({_SHORT.get(k, k): f"{last[k]:.3g}" for k in names})
            bar.close()
            seconds = time.perf_counter() - t0
            train_means = dict(zip(names, (mean_over_ranks(sums) / spe).tolist()))
            epoch += 1
            line = (f"epoch {epoch}/{epochs}  train " + _fmt(train_means, names)
                    + f"  ({spe * global_batch / seconds:.0f} examples/s, {seconds:.1f}s)")
            if evaluate is not None and main:
                test_terms = evaluate()
                write_test(test_terms)
                line += "  | test " + _fmt(test_terms, names)
            if epoch_lines:
                say(line)
            if objective.preview is not None and main:
                for tag, images in objective.preview(epoch).items():
                    tb.add_images(tag, images.float().cpu(), step)  # at the step, as the scalars: resume purges it
            due = epoch == epochs or time.perf_counter() - last_save >= checkpoint_seconds
            if broadcast_object(due):  # every rank takes part in gathering the generator states
                _save(run, objective, scaler, gen, rt, epoch, step, before + time.perf_counter() - t_start)
                last_save = time.perf_counter()
    finally:
        if log is not None:
            log.close()
            tb.close()
    if not train_means:  # resumed after the last epoch's checkpoint: its terms are in the log
        last = [r for r in rundir.read_metrics(run.metrics) if r["split"] == "train" and r["epoch"] == epoch]
        train_means = {k: float(sum(r[k] for r in last) / len(last)) for k in names} if last else {}
    return FitResult(train_means, test_terms, epoch, step, before + time.perf_counter() - t_start)


def _save(run: RunFolder, objective: Objective, scaler, gen: torch.Generator, rt: Runtime, epoch: int, step: int,
          seconds: float) -> None:
    """Rank 0 writes the checkpoint, with every rank's generator state (exact resume in any rank)."""
    streams = gather_objects((gen.get_state(), torch.get_rng_state()))
    if not is_main():
        return
    save_checkpoint(run.checkpoint, {
        "config": dataclasses.asdict(run.config), "epoch": epoch, "step": step,
        "model": objective.model.state_dict(),
        "optimizers": [o.state_dict() for o in objective.optimizers],
        "scheduler": objective.scheduler.state_dict() if objective.scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "generator": streams[0][0], "generators": [g for g, _ in streams],
        "torch_rng": streams[0][1], "torch_rngs": [r for _, r in streams],
        "device_type": rt.device.type, "world_size": get_world_size(), "seconds": seconds,
    })


class _BatchLog:
    """Per-batch terms kept on the device and written in chunks (no per-step GPU sync).

    Under torchrun the chunk is averaged over ranks first (one collective per chunk), so the
    log holds the global batch's terms; every rank checks them, so all stop together.
    """

    def __init__(self, log: rundir.MetricsLog | None, tb, names: tuple[str, ...], run: RunFolder, fix: str) -> None:
        self.log, self.tb, self.names, self.run, self.fix = log, tb, names, run, fix
        self.rows: list[tuple[int, int, float, Tensor]] = []

    def add(self, epoch: int, step: int, lr: float, values: Tensor) -> None:
        self.rows.append((epoch, step, lr, values))

    def full(self) -> bool:
        return len(self.rows) >= LOG_FLUSH_STEPS

    def flush(self) -> dict[str, float]:
        """Write the pending records; returns the last one. Stops on a non-finite term."""
        values = mean_over_ranks(torch.stack([v for *_, v in self.rows])).tolist()
        records = [{"split": "train", "epoch": e, "step": s, "lr": lr, **dict(zip(self.names, v))}
                   for (e, s, lr, _), v in zip(self.rows, values)]
        self.rows.clear()
        for r in records:
            if not all(math.isfinite(r[k]) for k in self.names):
                raise ViclabError(f"the loss became non-finite at step {r['step']} of {self.run.path}; {self.fix}")
        if self.log is not None:
            self.log.write(records)
            for r in records:
                for k in self.names:
                    self.tb.add_scalar(f"train/{k}", r[k], r["step"])
        return records[-1]


_SHORT = {"loss": "loss", "invariance": "inv", "variance": "var", "covariance": "cov"}


def _fmt(terms: dict[str, Any], names: tuple[str, ...]) -> str:
    return " ".join(f"{_SHORT.get(k, k)} {terms[k]:.4g}" for k in names)
