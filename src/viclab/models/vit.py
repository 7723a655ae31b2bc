"""Vision Transformers with the parameter names of timm's (``num_classes=0``) and DINO's, so their weights load
strictly: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}``, ``norm``. Position embeddings are resampled bicubically to another image size's patch grid,
both in ``forward`` and when loading a state dict."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from viclab.core.errors import ViclabError
from viclab.models.registry import register


def resample_pos_embed(pos_embed: Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int]) -> Tensor:
    """Bicubically resample the patch part of a position embedding, the class token's row kept, as timm's
    ``resample_abs_pos_embed`` (antialiased: shrinking a grid averages rather than skips positions).

    Args:
        pos_embed: ``(1, 1 + old_h * old_w, D)``, class token first, patches in row-major order.
        new_grid: ``(new_h, new_w)`` patch grid to produce.
        old_grid: ``(old_h, old_w)`` patch grid of ``pos_embed``.

    Returns:
        ``(1, 1 + new_h * new_w, D)``; ``pos_embed`` itself when the grids are equal.
    """
    if tuple(new_grid) == tuple(old_grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    grid = patch_pos.reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # (1, D, old_h, old_w)
    # interpolate wants float32 (bicubic has no half kernels on CPU); cast back afterwards.
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", antialias=True, align_corners=False)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def _square_grid(pos_embed: Tensor, dim: int) -> tuple[int, int] | None:
    """The square patch grid of a ``(1, 1 + s * s, dim)`` position embedding, or ``None`` if it is not one."""
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1 or pos_embed.shape[2] != dim:
        return None
    patches = pos_embed.shape[1] - 1
    side = math.isqrt(max(patches, 0))
    return (side, side) if side and side * side == patches else None


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches, each linearly embedded (a strided convolution)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, (H / p) * (W / p), D)`` tokens in row-major grid order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm's layout: q, k, v blocks of rows)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, D)`` -> ``(B, N, D)``."""
        b, n, d = x.shape
        # (B, N, 3D) -> (3, B, heads, N, D / heads): the row order timm's checkpoints were trained with
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(D / heads)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2``: ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; ``(B, N, D) -> (B, N, D)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a class token and learned position embeddings, without a classification head.

    The representation is the final LayerNorm's output at the class token (timm's ``global_pool="token"``).
    Images of another size than ``img_size`` are accepted if both sides are multiples of ``patch_size``.

    Args:
        img_size: side of the square images the position embeddings are built for.
        patch_size: side of the square patches.
        embed_dim: token width ``D``.
        depth: number of transformer blocks.
        num_heads: attention heads (must divide ``embed_dim``).
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        qkv_bias: give the ``qkv`` projection a bias (timm's and DINO's ViT-Ti/S/B do).
        in_chans: input channels.
    """

    def __init__(self, img_size: int = 32, patch_size: int = 4, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, mlp_ratio: float = 4.0, qkv_bias: bool = True, in_chans: int = 3) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.embed_dim = self.feature_dim = embed_dim
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, embed_dim, in_chans)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], embed_dim))
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # DINO's initialisation (timm's differs only in cls_token ~ N(0, 1e-6)); the patch
        # convolution and the LayerNorms (ones, zeros) keep PyTorch's default, as in both.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` images -> ``(B, 1 + (H / p) * (W / p), D)`` final-norm tokens, class token first."""
        p = self.patch_embed.patch_size
        h, w = x.shape[-2:]
        if h % p or w % p:
            raise ViclabError(f"image size {h}x{w} is not a multiple of the ViT patch size {p}; resize or crop "
                              f"the images to a multiple of {p}")
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + resample_pos_embed(self.pos_embed, (h // p, w // p), self.grid_size)
        return self.norm(self.blocks(tokens))

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` images -> ``(B, D)`` class-token representation."""
        return self.forward_tokens(x)[:, 0]

    forward = forward_features  # no head

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A checkpoint trained at another resolution (DINO: 224 px / patch 16 = 14x14) has its own grid's position
        # embedding: resample it before the shape checks (in load_state_dict's own copy of the dict).
        key = prefix + "pos_embed"
        if key in state_dict and state_dict[key].shape != self.pos_embed.shape:
            grid = _square_grid(state_dict[key], self.embed_dim)
            if grid is not None:
                state_dict[key] = resample_pos_embed(state_dict[key], self.grid_size, grid)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# Wrappers of a backbone's names in checkpoints: DDP, a training model's backbone (VICReg, DINO), torch.compile.
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# Classifier heads that published checkpoints carry and a backbone has no use for (timm: head, torchvision: fc).
_HEADS = ("head.", "fc.")


def strip_wrappers(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict with the wrapper prefixes ``module.``, ``backbone.`` and ``_orig_mod.`` removed
    from every key (repeatedly)."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def vit_like(model: VisionTransformer, state_dict: Mapping[str, Tensor]) -> VisionTransformer:
    """A ViT of ``model``'s width and heads with the patch size, image size and depth of a checkpoint
    (DINO's ViT-S/16 at 224 px into the ``vit_small`` family, say); ``model`` itself if they agree.

    Raises:
        ViclabError: the checkpoint has no ``patch_embed.proj.weight`` or no square ``pos_embed``.
    """
    sd = strip_wrappers(state_dict)
    proj, pos = sd.get("patch_embed.proj.weight"), sd.get("pos_embed")
    grid = _square_grid(pos, model.embed_dim) if pos is not None else None
    if proj is None or proj.dim() != 4 or grid is None:
        raise ViclabError("checkpoint is not a ViT of this width: it needs patch_embed.proj.weight and a square "
                          f"pos_embed of width {model.embed_dim}")
    patch = proj.shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    if (patch, grid[0], depth) == (model.patch_embed.patch_size, model.grid_size[0], len(model.blocks)):
        return model
    return VisionTransformer(img_size=grid[0] * patch, patch_size=patch, embed_dim=model.embed_dim, depth=depth,
                             num_heads=model.blocks[0].attn.num_heads)


def load_backbone_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Load a published backbone checkpoint ``{name: tensor}`` into ``model`` strictly, after removing wrappers.

    E.g. a timm / DINO ViT state dict into :class:`VisionTransformer` (a position embedding for another square
    grid is resampled), VICReg's ``resnet50.pth`` into ``ResNet50``; ``head.*`` and ``fc.*`` keys are dropped
    unless the model has them. Every check runs before any tensor is copied: a refused checkpoint changes nothing.

    Raises:
        ViclabError: keys missing or unexpected, or a tensor of the wrong shape (one line, with examples).
    """
    own = model.state_dict()
    cleaned = {key: value for key, value in strip_wrappers(state_dict).items()
               if key in own or not key.startswith(_HEADS)}
    name = type(model).__name__
    # BatchNorm fills in num_batches_tracked itself for checkpoints saved before PyTorch 0.4.1
    missing = [k for k in own if k not in cleaned and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in cleaned if k not in own]
    if missing or unexpected:
        parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ViclabError(f"checkpoint does not fit {name}: keys {'; '.join(parts)}; is it a checkpoint of this "
                          "architecture?")
    for key, value in cleaned.items():
        resizable = (isinstance(model, VisionTransformer) and key == "pos_embed"
                     and _square_grid(value, model.embed_dim) is not None)
        if tuple(value.shape) != tuple(own[key].shape) and not resizable:
            raise ViclabError(f"checkpoint does not fit {name}: {key} has shape {tuple(value.shape)}, the model "
                              f"{tuple(own[key].shape)}; is it a checkpoint of this model size?")
    model.load_state_dict(cleaned, strict=True)


@register()  # timm / DINO layout, 32 px, patch 4
def vit_tiny() -> tuple[nn.Module, int]:
    """ViT-Ti (D 192, depth 12, 3 heads) for 32x32 images, patch 4 (64 patches + class token); 192-d features."""
    net = VisionTransformer(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3)
    return net, net.embed_dim


@register()
def vit_small() -> tuple[nn.Module, int]:
    """ViT-S (D 384, depth 12, 6 heads) for 32x32 images, patch 4 (64 patches + class token); 384-d features."""
    net = VisionTransformer(img_size=32, patch_size=4, embed_dim=384, depth=12, num_heads=6)
    return net, net.embed_dim
