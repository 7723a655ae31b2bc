"""ViT backbones vs independent references: timm's state-dict layout and sizes, a written-out forward, resampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from viclab.core.errors import ViclabError
from viclab.models import BACKBONES, VisionTransformer, build_backbone, load_backbone_state_dict
from viclab.models.vit import resample_pos_embed


def timm_vit_layout(embed_dim: int, depth: int, patch_size: int, img_size: int, mlp_ratio: float = 4.0,
                    num_classes: int = 0) -> dict[str, tuple[int, ...]]:
    """``timm.create_model("vit_*", num_classes=...).state_dict()`` as ordered ``{name: shape}``, written by hand.

    Mirrors huggingface/pytorch-image-models ``timm/models/vision_transformer.py`` with the ViT-Ti/S/B defaults
    (class token, learned ``pos_embed`` including the class token's position, ``qkv_bias=True``, no layer scale,
    no registers, ``global_pool="token"`` so ``norm`` and no ``fc_norm``): ``VisionTransformer`` holds ``cls_token
    (1, 1, D)``, ``pos_embed (1, 1 + N, D)``, ``patch_embed.proj = Conv2d(3, D, p, stride p)``, ``blocks.{i}``
    (``Block``: ``norm1``, ``attn.qkv = Linear(D, 3D)``, ``attn.proj = Linear(D, D)``, ``norm2``, ``mlp.fc1 =
    Linear(D, mlp_ratio * D)``, ``mlp.fc2``), ``norm`` and ``head = Linear(D, num_classes)`` or Identity when 0.
    DINO's ``vision_transformer.py`` (facebookresearch/dino) has the same names (and no head).
    """
    d, p, n = embed_dim, patch_size, (img_size // patch_size) ** 2
    hidden = int(d * mlp_ratio)
    layout: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + n, d),
                                          "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,)}
    for i in range(depth):
        b = f"blocks.{i}"
        layout.update({
            f"{b}.norm1.weight": (d,), f"{b}.norm1.bias": (d,),
            f"{b}.attn.qkv.weight": (3 * d, d), f"{b}.attn.qkv.bias": (3 * d,),
            f"{b}.attn.proj.weight": (d, d), f"{b}.attn.proj.bias": (d,),
            f"{b}.norm2.weight": (d,), f"{b}.norm2.bias": (d,),
            f"{b}.mlp.fc1.weight": (hidden, d), f"{b}.mlp.fc1.bias": (hidden,),
            f"{b}.mlp.fc2.weight": (d, hidden), f"{b}.mlp.fc2.bias": (d,),
        })
    layout["norm.weight"], layout["norm.bias"] = (d,), (d,)
    if num_classes:
        layout["head.weight"], layout["head.bias"] = (num_classes, d), (num_classes,)
    return layout


def _numel(layout: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in layout.values())


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# A ViT small enough for a functional reference in milliseconds: 16 px / patch 4 = a 4x4 grid.
SMALL = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4}


def _small_vit(**overrides) -> VisionTransformer:
    return VisionTransformer(**{**SMALL, **overrides})


def _random_vit_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights at scales that keep activations O(1) and make attention far from uniform."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in layout.items():
        r = torch.randn(s, generator=g)
        if k.startswith("norm") or ".norm" in k:
            sd[k] = 1 + 0.3 * r if k.endswith("weight") else 0.2 * r
        elif k.endswith("bias"):
            sd[k] = 0.1 * r
        elif k.endswith("weight"):  # Linear / Conv2d: unit-variance outputs, qkv 3x larger for peaked softmax
            fan_in = math.prod(s[1:])
            sd[k] = r * (3 if "qkv" in k else 1) / math.sqrt(fan_in)
        else:  # cls_token, pos_embed
            sd[k] = 0.5 * r
    return sd


# --- (a) sizes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("embed_dim, heads, trunk, published", [
    (192, 3, 5_524_416, 5_717_416),  # vit_tiny_patch16_224: "5.7M" with its 1000-class head
    (384, 6, 21_665_664, 22_050_664),  # vit_small_patch16_224: "22M" (22.1M) with its head
])
def test_parameter_counts_match_timm_at_patch16_224(embed_dim, heads, trunk, published):
    d, hidden, tokens = embed_dim, 4 * embed_dim, 1 + (224 // 16) ** 2
    # The architecture, summed by hand: patch conv, cls token, pos embed, 12 blocks (2 LayerNorms, qkv, proj,
    # fc1, fc2, with biases), final LayerNorm.
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (hidden * d + hidden) + (d * hidden + d)
    formula = (d * 3 * 16 * 16 + d) + d + tokens * d + 12 * block + 2 * d
    assert formula == trunk
    assert formula + 1000 * d + 1000 == published
    assert _numel(timm_vit_layout(d, 12, 16, 224)) == trunk
    assert _numel(timm_vit_layout(d, 12, 16, 224, num_classes=1000)) == published
    model = VisionTransformer(img_size=224, patch_size=16, embed_dim=d, depth=12, num_heads=heads)
    assert sum(p.numel() for p in model.parameters()) == trunk
    assert list(_shapes(model).items()) == list(timm_vit_layout(d, 12, 16, 224).items())  # names, shapes, order


@pytest.mark.parametrize("name, dim", [("vit_tiny", 192), ("vit_small", 384)])
def test_factories_build_32px_patch4_models_in_timm_layout(name, dim):
    model, feature_dim = build_backbone(name)
    assert feature_dim == dim and name in BACKBONES
    assert model.grid_size == (8, 8)  # 64 patches + class token
    assert _shapes(model) == timm_vit_layout(dim, 12, 4, 32)


# --- (b) timm-named weights and a written-out forward --------------------------------------------------------------

def _layer_norm(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, eps: float = 1e-6) -> torch.Tensor:
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{p}.weight"] + sd[f"{p}.bias"]


def _reference_vit(x: torch.Tensor, sd: dict[str, torch.Tensor], patch: int, heads: int) -> torch.Tensor:
    """timm's ViT forward in float64 from plain tensor ops: class-token output of the final LayerNorm.

    Patches are cut with reshapes (row-major over the grid, channels then rows then columns inside a patch, as
    the conv weight is laid out), attention is ``softmax(q k^T / sqrt(d_head)) v`` per head with the ``qkv`` rows
    split as [q | k | v] and each into heads, GELU is the exact erf form, LayerNorm eps is 1e-6.
    """
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    patches = x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * patch ** 2)
    d = sd["cls_token"].shape[-1]
    t = patches @ sd["patch_embed.proj.weight"].reshape(d, -1).T + sd["patch_embed.proj.bias"]
    t = torch.cat([sd["cls_token"].expand(b, 1, d), t], dim=1) + sd["pos_embed"]
    n, hd = t.shape[1], d // heads
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}"
        y = _layer_norm(t, sd, f"{p}.norm1")
        qkv = y @ sd[f"{p}.attn.qkv.weight"].T + sd[f"{p}.attn.qkv.bias"]
        q, k, v = (z.reshape(b, n, heads, hd) for z in qkv.split(d, dim=-1))
        attn = torch.softmax(torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(hd), dim=-1)
        o = torch.einsum("bhqk,bkhe->bqhe", attn, v).reshape(b, n, d)
        t = t + o @ sd[f"{p}.attn.proj.weight"].T + sd[f"{p}.attn.proj.bias"]
        y = _layer_norm(t, sd, f"{p}.norm2") @ sd[f"{p}.mlp.fc1.weight"].T + sd[f"{p}.mlp.fc1.bias"]
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        t = t + y @ sd[f"{p}.mlp.fc2.weight"].T + sd[f"{p}.mlp.fc2.bias"]
    return _layer_norm(t, sd, "norm")[:, 0]


def test_timm_named_state_dict_loads_strictly_and_matches_reference_forward():
    layout = timm_vit_layout(SMALL["embed_dim"], SMALL["depth"], SMALL["patch_size"], SMALL["img_size"])
    sd = _random_vit_state(layout, 0)
    model = _small_vit()
    model.load_state_dict(sd, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    model.eval()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x)
    expect = _reference_vit(x, sd, SMALL["patch_size"], SMALL["num_heads"])
    assert got.shape == (3, SMALL["embed_dim"])
    torch.testing.assert_close(got.double(), expect, rtol=1e-5, atol=1e-5)
    # the attention is not degenerate: images differ, so do their representations
    assert (expect[0] - expect[1]).abs().max() > 0.1


def test_loader_strips_wrappers_and_drops_the_head():
    layout = timm_vit_layout(SMALL["embed_dim"], SMALL["depth"], SMALL["patch_size"], SMALL["img_size"],
                             num_classes=10)
    sd = _random_vit_state(layout, 2)
    model = _small_vit()
    load_backbone_state_dict(model, {f"module.backbone.{k}": v for k, v in sd.items()})
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items() if not k.startswith("head."))


# --- (c) position-embedding resampling ----------------------------------------------------------------------------

def test_32px_model_takes_64px_and_non_square_images():
    model, dim = build_backbone("vit_tiny")
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, dim)
        assert model(torch.randn(1, 3, 32, 48)).shape == (1, dim)
    with pytest.raises(ViclabError, match="not a multiple of the ViT patch size 4"):
        model(torch.randn(1, 3, 30, 32))


def test_forward_time_resampling_equals_load_time_resampling():
    """A 16-px model run on 32-px images behaves as a 32-px model that loaded its weights (grid 4x4 -> 8x8)."""
    small, big = _small_vit(), _small_vit(img_size=32)
    big.load_state_dict(small.state_dict(), strict=True)
    assert big.pos_embed.shape == (1, 1 + 64, SMALL["embed_dim"])
    small.eval(), big.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(small(x), big(x), rtol=0, atol=1e-6)


def test_dino_grid_pos_embed_loads_into_an_8x8_model():
    """DINO's 224 px / patch 16 checkpoints have a 14x14 grid; a 32 px / patch 4 model has 8x8."""
    d = 8
    layout = timm_vit_layout(d, 1, 16, 224)
    layout["patch_embed.proj.weight"] = (d, 3, 4, 4)  # only the position grid differs from the target model
    sd = _random_vit_state(layout, 3)
    rows, cols = torch.meshgrid(torch.arange(14.0), torch.arange(14.0), indexing="ij")
    grid = sd["pos_embed"][0, 1:].reshape(14, 14, d)
    grid[..., 0], grid[..., 1], grid[..., 2] = rows, cols, 3.0  # a row ramp, a column ramp, a constant
    dino_pos = sd["pos_embed"].clone()

    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=d, depth=1, num_heads=2)
    model.load_state_dict(sd, strict=True)
    assert torch.equal(sd["pos_embed"], dino_pos)  # the caller's dict is left alone
    pos = model.pos_embed.detach()
    assert pos.shape == (1, 1 + 64, d)
    assert torch.equal(pos[0, 0], dino_pos[0, 0])  # the class token's position is kept as it is
    out = pos[0, 1:].reshape(8, 8, d)
    torch.testing.assert_close(out[..., 2], torch.full((8, 8), 3.0))
    # row-major order survives: the row ramp varies down the rows only, the column ramp across columns only
    assert torch.allclose(out[..., 0], out[:, :1, 0].expand(8, 8), atol=1e-5)
    assert torch.allclose(out[..., 1], out[:1, :, 1].expand(8, 8), atol=1e-5)
    assert (out[1:, 0, 0] > out[:-1, 0, 0]).all() and (out[0, 1:, 1] > out[0, :-1, 1]).all()
    # and the values are timm's resample_abs_pos_embed recipe: bicubic, antialiased, over the (D, 14, 14) grid
    expect = F.interpolate(dino_pos[:, 1:].reshape(1, 14, 14, d).permute(0, 3, 1, 2), size=(8, 8), mode="bicubic",
                           antialias=True, align_corners=False).permute(0, 2, 3, 1).reshape(64, d)
    torch.testing.assert_close(pos[0, 1:], expect)
    # the checkpoint loader takes the same path
    other = VisionTransformer(img_size=32, patch_size=4, embed_dim=d, depth=1, num_heads=2)
    load_backbone_state_dict(other, sd)
    assert torch.equal(other.pos_embed, model.pos_embed)


def test_resampling_to_the_same_grid_is_the_identity():
    pos = torch.randn(1, 1 + 64, 16)
    assert resample_pos_embed(pos, (8, 8), (8, 8)) is pos
    # and the bicubic kernel itself would not move a same-size grid either
    grid = pos[:, 1:].reshape(1, 8, 8, 16).permute(0, 3, 1, 2)
    same = F.interpolate(grid, size=(8, 8), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(same, grid)


# --- (d) contract, gradients, refusals --------------------------------------------------------------------------

def test_forward_features_is_the_representation():
    model, dim = build_backbone("vit_tiny")
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, dim)
        assert torch.equal(model(x), feats)
        assert model.forward_tokens(x).shape == (2, 1 + 64, dim)


@pytest.mark.parametrize("size", [16, 24])  # the built grid, and a resampled one
def test_gradients_reach_every_parameter(size):
    model = _small_vit()
    model.train()
    model(torch.randn(2, 3, size, size)).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _good_state() -> dict[str, torch.Tensor]:
    layout = timm_vit_layout(SMALL["embed_dim"], SMALL["depth"], SMALL["patch_size"], SMALL["img_size"])
    return _random_vit_state(layout, 4)


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("norm.bias"), r"keys 1 missing \(e\.g\. norm\.bias\)"),
    (lambda sd: sd.update({"blocks.2.norm1.weight": torch.ones(32)}), r"1 unexpected \(e\.g\. blocks\.2\.norm1"),
    (lambda sd: sd.update({"blocks.0.attn.qkv.weight": torch.ones(64, 32)}), r"blocks\.0\.attn\.qkv\.weight has "
                                                                              r"shape \(64, 32\)"),
    (lambda sd: sd.update({"pos_embed": torch.ones(1, 20, 32)}), r"pos_embed has shape \(1, 20, 32\)"),
    (lambda sd: sd.update({"pos_embed": torch.ones(1, 17, 16)}), r"pos_embed has shape \(1, 17, 16\)"),
], ids=["missing", "unexpected", "qkv_shape", "pos_not_a_square_grid", "pos_other_width"])
def test_bad_state_dict_is_a_one_line_user_error_and_changes_nothing(damage, message):
    sd = _good_state()
    damage(sd)
    model = _small_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ViclabError, match=message) as info:
        load_backbone_state_dict(model, sd)
    assert "\n" not in str(info.value) and "VisionTransformer" in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
