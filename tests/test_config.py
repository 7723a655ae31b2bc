"""Config: presets, TOML, overrides, type coercion, validation."""

from __future__ import annotations

import dataclasses

import pytest

from viclab.config import PRESETS, Config, resolve_config
from viclab.core.errors import ViclabError


def test_exercise_preset_is_spec_section_2():
    c = resolve_config("exercise")
    assert (c.model.backbone, c.model.projector) == ("exercise_resnet18", "512-512-512")
    assert (c.optim.name, c.optim.lr, c.optim.betas, c.optim.weight_decay) == ("adam", 3e-4, (0.9, 0.999), 1e-6)
    assert (c.train.batch_size, c.train.epochs) == (256, 30)
    assert (c.loss.inv_weight, c.loss.var_weight, c.loss.cov_weight, c.loss.gamma, c.loss.eps) == (25, 25, 1, 1, 1e-4)
    a = c.augment
    assert (a.size, a.crop_scale, a.hflip_p, a.grayscale_p, a.blur_p, a.blur_kernel) == (32, (0.2, 1.0), 0.5, 0.2,
                                                                                         0.5, 3)
    assert (a.brightness, a.contrast, a.saturation, a.hue, a.jitter_p, a.blur_sigma) == (0.4, 0.4, 0.2, 0.1, 1.0,
                                                                                         (0.1, 2.0))
    assert a.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert a.mean == (0.4914, 0.4822, 0.4465) and a.std == (0.247, 0.243, 0.261)


def test_overrides_are_typed_and_frozen():
    c = resolve_config("cpu", overrides=["optim.lr=1e-3", "train.epochs=3", "augment.crop_scale=0.08,1",
                                         "model.compile=true", "data.data_dir=/x", "data.data_dir=none"])
    assert c.optim.lr == 1e-3 and c.train.epochs == 3 and c.augment.crop_scale == (0.08, 1.0)
    assert c.model.compile is True and c.data.data_dir is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optim.lr = 2.0  # type: ignore[misc]


def test_toml_then_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('preset = "cpu"\n[optim]\nlr = 0.01\n[augment]\nsolarize_p = 0.2\ncrop_scale = [0.1, 0.9]\n')
    c = resolve_config(None, str(p), ["optim.lr=0.02"])
    assert c.model.backbone == PRESETS["cpu"].model.backbone
    assert c.optim.lr == 0.02 and c.augment.solarize_p == 0.2 and c.augment.crop_scale == (0.1, 0.9)


@pytest.mark.parametrize("override,fragment", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("optimizer.lr=1", "unknown config section 'optimizer'"),
    ("train.epochs=2.5", "train.epochs='2.5' is not a valid int"),
    ("train.epochs=0", "train.epochs=0 must be >= 1"),
    ("augment.hflip_p=1.5", "not a probability"),
    ("loss.variant=lightly", "loss.variant='lightly' is unknown"),
    ("augment.crop_scale=0.5", "needs 2 comma-separated values"),
    ("model.compile=maybe", "not a valid bool"),
    ("lr=3", "write section.field=value"),
])
def test_bad_values_are_explained(override, fragment):
    with pytest.raises(ViclabError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        resolve_config("exercise", overrides=[override])


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(ViclabError, match="unknown preset 'big'"):
        resolve_config("big")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr=")
    with pytest.raises(ViclabError, match="cannot read config file"):
        resolve_config(None, str(bad))
    with pytest.raises(ViclabError, match="does not exist"):
        resolve_config(None, str(tmp_path / "missing.toml"))


def test_json_round_trip():
    c = resolve_config("cpu", overrides=["augment.solarize_p=0.1"])
    assert Config.from_dict(c.to_dict()) == c
