"""Device, precision and process-group facts, decided in one place.

The distributed helpers answer rank 0 / world 1 when no process group is initialised, so callers never branch on it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from viclab.core.errors import ViclabError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where tensors live (``device``) and which dtype autocast computes in (``autocast_dtype``: ``None`` for full
    fp32, else bf16 or fp16), and the ``reason`` for this precision (logged by the training loop)."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    reason: str = ""

    @property
    def precision(self) -> str:
        return next(k for k, v in _DTYPES.items() if v == self.autocast_dtype)

    @property
    def key(self) -> dict[str, str]:
        """What of the runtime changes a computation's numbers (for fingerprints): device type and precision."""
        return {"device": self.device.type, "precision": self.precision}

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled only for fp16 (its small exponent range underflows gradients)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)

    def describe(self) -> str:
        """One line: device, its name, the precision and why, e.g. for the run log."""
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            name = f"{torch.cuda.get_device_name(index)}, compute capability " \
                   + ".".join(map(str, torch.cuda.get_device_capability(index)))
        else:
            name = platform.processor() or platform.machine()
        return f"{self.device} ({name}), precision {self.precision}" + (f" ({self.reason})" if self.reason else "")


def cpu_bf16() -> str:
    """The CPU's native bf16 instructions as torch's CPU detection reports them (``"AMX"``, ``"avx512_bf16"``, both
    joined by ``" and "``), or ``""``. Without them oneDNN emulates bf16 in fp32 plus conversions, slower than fp32."""
    probes = (("AMX", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    return " and ".join(name for name, fn in probes if getattr(torch.cpu, fn, lambda: False)())


def select_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Resolve ``train.device`` / ``train.precision`` to a :class:`Runtime`.

    ``auto`` picks CUDA when present (under torchrun, the GPU ``LOCAL_RANK`` of this node). Precision
    ``auto`` is bf16 autocast where the device computes bf16 natively (CUDA compute capability >= 8.0,
    a CPU with :func:`cpu_bf16`), else fp16 autocast with a gradient scaler on CUDA and fp32 on the CPU.
    """
    dev = _select_device(device)
    if precision not in ("auto", *_DTYPES):
        raise ViclabError(f"precision {precision!r} is unknown; use auto, fp32, bf16 or fp16")
    precision, reason = _auto_precision(dev) if precision == "auto" else (precision, "asked for")
    return Runtime(device=dev, autocast_dtype=_DTYPES[precision], reason=reason)


def _select_device(device: str) -> torch.device:
    """``train.device`` resolved and checked: ``auto``, ``cpu``, ``cuda`` (torchrun: this rank's GPU), ``cuda:N``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    asked = device
    if device == "cuda" and launched_world_size() > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # torchrun: this node's GPU of this process
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ViclabError(f"device {device!r} is not a device; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and launched_world_size() > 1 and torch.device(asked).index is not None:
        raise ViclabError(f"device {asked!r} under torchrun puts all {launched_world_size()} processes on one GPU; "
                          "use train.device=cuda (or auto): each process then takes the GPU of its LOCAL_RANK")
    if dev.type not in ("cpu", "cuda"):
        raise ViclabError(f"device {device!r} is unsupported; use auto, cpu or cuda[:N]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ViclabError(f"device {device!r} asked, but no CUDA GPU is visible; use cpu (train.device=cpu, "
                          "--device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ViclabError(f"device {device!r} asked, but only {torch.cuda.device_count()} CUDA GPU(s) are visible; "
                          f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


def _auto_precision(dev: torch.device) -> tuple[str, str]:
    """``(precision, why)`` that ``auto`` means on ``dev`` (see :func:`select_runtime`)."""
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        if major >= 8:
            return "bf16", f"auto: the GPU computes bf16 natively, compute capability {major}.{minor} >= 8.0"
        return "fp16", (f"auto: compute capability {major}.{minor} < 8.0 has no native bf16, so fp16 autocast with a "
                        "gradient scaler")
    if native := cpu_bf16():
        return "bf16", f"auto: the CPU computes bf16 natively ({native})"
    return "fp32", "auto: this CPU has no native bf16 (avx512_bf16 or AMX), so fp32"


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that can still be allocated on ``device``: free GPU memory, or ``MemAvailable`` (else physical memory)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(needed: int, device: torch.device | str, what: str, fix: str) -> None:
    """Refuse now, with the numbers, what would not fit in memory later (a traceback deep in torch, or OOM kill)."""
    free = available_memory(device)
    if needed > 0.9 * free:  # what is left must also hold the interpreter, libraries and buffers
        raise ViclabError(f"{what} needs at least {needed / 2**30:.1f} GiB but {torch.device(device).type} has "
                          f"{free / 2**30:.1f} GiB available; {fix}")


_ALONE = [False]  # inside local_process(): this rank acts as the only process


def is_distributed() -> bool:
    """A process group is up and this process takes part in it (not inside :func:`local_process`)."""
    return dist.is_available() and dist.is_initialized() and not _ALONE[0]


def _busy_jiffies() -> int | None:
    """CPU time all processes have spent busy since boot (Linux ``/proc/stat``), in clock ticks."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # all but idle and iowait


def others_busy_cores(seconds: float = 0.3) -> float:
    """How many cores *other* processes keep busy, sampled over ``seconds`` while this one waits
    (0 where it cannot be measured: not Linux)."""
    import resource

    def own() -> float:
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime

    b0, o0, t0 = _busy_jiffies(), own(), time.perf_counter()
    if b0 is None:
        return 0.0
    time.sleep(seconds)
    b1, o1, t1 = _busy_jiffies(), own(), time.perf_counter()
    busy = (b1 - b0) / os.sysconf("SC_CLK_TCK") - (o1 - o0)
    return max(0.0, busy / (t1 - t0))


@contextlib.contextmanager
def intra_op_threads(n: int):
    """Within, torch runs each op on at most ``n`` threads (restored after).

    For loops of many small ops: every op parallelised over OpenMP threads ends at a barrier that waits for all of
    them, and on a busy machine one descheduled thread stalls that op for a time slice, far longer than the op.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def local_process():
    """Within, this process is rank 0 of world 1 although a process group exists: the work
    rank 0 does alone while the other ranks wait (an evaluation, a one-process ablation)."""
    saved, _ALONE[0] = _ALONE[0], True
    try:
        yield
    finally:
        _ALONE[0] = saved


def require_one_process(what: str) -> None:
    """Refuse to run ``what`` as several uncoordinated torchrun processes (each would write the same folder)."""
    if launched_world_size() > 1 and not (dist.is_available() and dist.is_initialized()):
        raise ViclabError(f"{what} runs in one process; run it without torchrun")


def get_rank() -> int:
    """This process's rank (0 in one process)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Processes training together (1 in one process)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, the one process that writes files (logs, checkpoints, weights)."""
    return get_rank() == 0


def launched_world_size() -> int:
    """The world size torchrun announces (``WORLD_SIZE``); 1 when not launched by torchrun."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ViclabError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun") from None


LAUNCHER_POLL_SECONDS = 1.0  # how often a rank checks that its launcher is still there


def _exit_without_launcher(launcher: int) -> None:
    """A watchdog thread's loop: end this process once its launcher is gone (an orphan's parent id changes).

    torchrun ends its ranks when one fails, but nothing ends them when torchrun itself is killed (SIGKILL, a lost
    terminal): they would wait on each other, or on rank 0's evaluation, for the whole process-group timeout.
    """
    while os.getppid() == launcher:
        time.sleep(LAUNCHER_POLL_SECONDS)
    print(f"viclab: error: the launcher of this rank (process {launcher}) is gone, so process {os.getpid()} stops; "
          "run the command again (a training continues from its last checkpoint)", file=sys.stderr, flush=True)
    os._exit(1)  # from a thread: sys.exit would end only the thread, and the main one may sit in a collective


def init_distributed(device: torch.device) -> bool:
    """Join torchrun's process group if torchrun launched more than one process (NCCL between GPUs, gloo between
    CPUs); returns whether a group is up.

    The timeout (``VICLAB_DIST_TIMEOUT_MIN``, default 60 minutes) bounds how long ranks wait for each other, e.g.
    while rank 0 alone evaluates. A rank whose launcher dies exits within :data:`LAUNCHER_POLL_SECONDS`.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()  # up already; inside local_process() this process works alone
    if launched_world_size() == 1:
        return False
    if not dist.is_available():
        raise ViclabError("this PyTorch build has no torch.distributed; run in one process (without torchrun)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    minutes = float(os.environ.get("VICLAB_DIST_TIMEOUT_MIN", "60"))
    threading.Thread(target=_exit_without_launcher, args=(os.getppid(),), name="viclab-launcher-watchdog",
                     daemon=True).start()
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return True


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_(t: torch.Tensor) -> torch.Tensor:
    """Overwrite ``t`` in place with rank 0's values (no-op in one process)."""
    if is_distributed():
        dist.broadcast(t, src=0)
    return t


def _differentiable_collectives() -> Any:
    """torch's functional collectives where they are differentiable (those with ``all_gather_single``, which
    deprecate torch.distributed.nn's with a warning per call); ``None`` on an older torch."""
    try:
        from torch.distributed import _functional_collectives as fc
    except ImportError:
        return None
    return fc if hasattr(fc, "all_gather_single") else None


def _waited(t: torch.Tensor) -> torch.Tensor:
    return t.wait() if hasattr(t, "wait") else t  # an AsyncCollectiveTensor: wait here, once


def cat_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (all of one shape) concatenated along dim 0 in rank order, differentiable: each rank's part
    gets the sum of the gradients every rank computes for it (``t`` itself in one process)."""
    if not is_distributed():
        return t
    if (fc := _differentiable_collectives()) is None:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(t), dim=0)
    return _waited(fc.all_gather_single(t.contiguous(), 0, dist.group.WORLD))


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``t`` over all ranks, differentiable (each rank's gradient is the
    sum of every rank's gradient of the result; ``t`` itself in one process)."""
    if not is_distributed():
        return t
    if (fc := _differentiable_collectives()) is None:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    return _waited(fc.all_reduce(t, "sum", dist.group.WORLD))


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``t`` over all ranks (``t`` itself in one process)."""
    if not is_distributed():
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t / get_world_size()
