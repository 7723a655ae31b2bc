"""BatchNorm over the global batch of all processes (``model.sync_bn``): ``torch.nn.SyncBatchNorm`` runs only on
GPUs, so between CPU processes (gloo) :class:`GlobalBatchNorm` all-reduces the statistics, gradients flowing back."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from viclab.core.runtime import get_world_size, sum_over_ranks


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d whose training statistics span the batches of every rank (each with the same channels); the
    ``state_dict`` of the BatchNorm it replaces, and that BatchNorm itself in one process or in eval mode."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3, 4, 5):
            raise ValueError(f"expected a 2-D to 5-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, ...)`` -> same shape, normalised per channel over all ranks' ``B x ...``."""
        world = get_world_size()
        if not self.training or world == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()  # statistics in fp32, also under autocast
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=torch.float32)
        # Two reductions (mean, then centred squares) rather than E[x^2] - E[x]^2: no cancellation,
        # the same numbers as BatchNorm on the concatenated batch to float rounding.
        total = sum_over_ranks(torch.cat([xf.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = xf - mean.reshape(shape)
        var = sum_over_ranks(centred.pow(2).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised across ranks: torch's SyncBatchNorm on CUDA,
    :class:`GlobalBatchNorm` elsewhere. Parameters and buffers are kept (moved, not copied)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module) if device.type == "cuda" else _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.train(module.training)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module


__all__ = ["GlobalBatchNorm", "convert_sync_batchnorm"]
