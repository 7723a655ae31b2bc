"""Optimiser parameter groups: no weight decay on biases and normalisation weights when asked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from viclab.config import resolve
from viclab.engine.vicreg import make_optimizer


@pytest.mark.parametrize("decay_norm_bias", [True, False])
def test_weight_decay_skips_norms_and_biases(decay_norm_bias):
    """With zero gradients AdamW's update is its decoupled decay alone, ``p <- p (1 - lr wd)``
    (Loshchilov & Hutter): a decayed parameter shrinks by exactly that factor, an exempt one stays."""
    cfg = resolve("train", "cpu", overrides=["optim.lr=0.1", "optim.weight_decay=0.5",
                                           f"optim.decay_norm_bias={str(decay_norm_bias).lower()}"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.BatchNorm1d(3), nn.Linear(3, 2, bias=False))
    for m in model.modules():  # norm weights away from 1 so that decay would show
        if isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
            nn.init.uniform_(m.weight, 2.0, 3.0)
            nn.init.uniform_(m.bias, 1.0, 2.0)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = make_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        exempt = p.ndim <= 1 and not decay_norm_bias
        factor = 1.0 if exempt else 1 - 0.1 * 0.5
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=0, atol=1e-7, msg=name)
    assert len(opt.param_groups) == (1 if decay_norm_bias else 2)


def test_frozen_parameters_are_left_out():
    cfg = resolve("train", "cpu")
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    assert [p for g in make_optimizer(cfg, model).param_groups for p in g["params"]] == [model.weight]
