"""gather_distributed: N processes of batch b == one process of batch N*b (gloo, CPU)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from viclab.core.runtime import get_rank, get_world_size
from viclab.losses import VICRegLoss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, z, zp, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = z.shape[0] // world
        mine = z[rank * b:(rank + 1) * b].clone().requires_grad_()
        mine_p = zp[rank * b:(rank + 1) * b].clone().requires_grad_()
        terms = VICRegLoss(gather_distributed=True)(mine, mine_p)
        terms.loss.backward()
        # Each rank's gradient is w.r.t. the global loss restricted to its slice, summed
        # over ranks by the all-gather's backward: divide by world for the global view.
        out[rank] = (terms.loss.detach(), terms.variance.detach(), terms.covariance.detach(),
                     mine.grad / world, mine_p.grad / world)
    finally:
        dist.destroy_process_group()


def test_helpers_without_process_group():
    assert get_rank() == 0 and get_world_size() == 1
    z = torch.randn(8, 4)
    a = VICRegLoss(gather_distributed=True)(z, z + 1)
    b = VICRegLoss(gather_distributed=False)(z, z + 1)
    assert torch.equal(a.loss, b.loss)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_processes_match_one_big_batch():
    torch.manual_seed(0)
    world, b, d = 2, 8, 6
    z, zp = torch.randn(world * b, d, dtype=torch.float64), torch.randn(world * b, d, dtype=torch.float64)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        mp.start_processes(_worker, args=(world, _free_port(), z, zp, out), nprocs=world, start_method="spawn")
        results = dict(out)
    gz, gzp = z.clone().requires_grad_(), zp.clone().requires_grad_()
    ref = VICRegLoss()(gz, gzp)
    ref.loss.backward()
    for rank in range(world):
        loss, var, cov, grad, grad_p = results[rank]
        # var/cov are global; invariance is the local mean (global mean in expectation).
        assert var.item() == pytest.approx(ref.variance.item(), rel=1e-12)
        assert cov.item() == pytest.approx(ref.covariance.item(), rel=1e-12)
        sl = slice(rank * b, (rank + 1) * b)
        # The variance/covariance gradient of each slice equals the single-process one;
        # the invariance gradient is scaled by world (local mean over b instead of N*b).
        inv_grad = 25.0 * 2 * (z[sl] - zp[sl]) / (b * d)
        ref_inv_grad = 25.0 * 2 * (z[sl] - zp[sl]) / (world * b * d)
        torch.testing.assert_close(grad - inv_grad / world, gz.grad[sl] - ref_inv_grad)
