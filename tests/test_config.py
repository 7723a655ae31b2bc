"""Config: recipe files, TOML, overrides, type coercion, validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from viclab.config import PRESETS, STUDY_PRESETS, Config, DetectConfig, resolve, view_overrides
from viclab.core.errors import ViclabError

# dataclasses.asdict of every preset and of a few resolved configs, dumped from the in-code presets before
# they became recipe files (commit 156f58b): the independent reference the files must reproduce.
BEFORE = json.loads((Path(__file__).parent / "fixtures" / "presets_before.json").read_text())


# Fields added since the fixture was dumped, with their defaults: an old config holds them there unless changed below.
ADDED = {"augment": {"local_crops": 0, "local_size": 16, "local_crop_scale": [0.05, 0.4]},
         "train": {"objective": "vicreg", "shift_weight": 20.0},  # issue 27
         "eval": {"anomaly_layers": "last"},  # issue 27
         "detect": {"mean_shift": False, "layers": "last",  # issue 27: a detector's own fields
                    "machine_id": {"window": 64, "hop": 32, "epochs": 200, "batch_size": 32, "lr": 0.001,
                                   "weight_decay": 0.0001, "seed": 0}},
         "": {"no_variance_subset": 0, "sound_machine_id_epochs": 200}}  # issue 27: the study's machine-ID budget

# What issue 26 changed on purpose (the fp32 recipe search and the study's budget), as dotted paths -> new values:
# the cpu recipe (and the detectors' network, which is the cpu recipe) ...
_CPU_26 = {"model.backbone": "small_cnn_pf", "optim.warmup_epochs": 0.5, "train.epochs": 2}
# ... and the cpu study: its recipe (the cpu recipe, one epoch, two 16-px local views) feeds the detectors' too.
_STUDY_RECIPE_26 = {"augment.local_crops": 2, "model.backbone": "small_cnn_pf", "optim.lr": 0.004,
                    "optim.warmup_epochs": 0.5, "train.min_steps": 10}
_STUDY_26 = {"no_variance_subset": 10000, "detect.autoencoder.epochs": 3, "detect_classes": ["airplane"],
             "eval.tsne_points": 3000, "latent.epochs": 5, "latent_naive_epochs": 3, "sound_autoencoder_epochs": 30,
             "sound_dcase_epochs": 30, "sound_epochs": 15, "sound_machines": ["fan"], "sound_probe_epochs": 1,
             **{f"recipe.{k}": v for k, v in _STUDY_RECIPE_26.items()},
             **{f"detect.recipe.{k}": v for k, v in _STUDY_RECIPE_26.items()}}
# Issue 27: the study's detectors read every stage of their encoders, the cpu study's machine-ID budget.
_STUDY_27 = {"detect.layers": "all"}
_STUDY_CPU_27 = {**_STUDY_27, "sound_machine_id_epochs": 50}
CHANGED = {"cpu": _CPU_26, "detect": {f"recipe.{k}": v for k, v in _CPU_26.items()},
           "study_cpu": {**_STUDY_26, **_STUDY_CPU_27, "detect_epochs": 2, "detect.recipe.train.epochs": 2},
           "study_cpu_over": {**_STUDY_26, **_STUDY_CPU_27}, "study_exercise": _STUDY_27}


def _with_added(d, top: bool = True):
    """``d`` with the ADDED fields at their defaults wherever their section is (the study's own at the top)."""
    if not isinstance(d, dict):
        return d
    out = {k: _with_added(v, False) for k, v in d.items()}
    for k, fields in ADDED.items():
        if k in out and isinstance(out[k], dict):
            out[k] = {**out[k], **{f: x for f, x in fields.items() if f not in out[k]}}
    if top and "recipe" in out and "latent" in out:  # a study config
        out = {**out, **ADDED[""]}
    if top and "recipe" in out and "autoencoder" in out:  # a detector config
        out = {**out, **ADDED["detect"]}
    return out


def _expected(key: str, before: dict) -> dict:
    """The fixture's config with the ADDED fields and issue 26's changes (``CHANGED[key]``)."""
    out = json.loads(json.dumps(_with_added(before)))
    for path, value in CHANGED.get(key, {}).items():
        *parents, leaf = path.split(".")
        node = out
        for p in parents:
            node = node[p]
        assert leaf in node and node[leaf] != value, (key, path)  # a change, of a field the fixture holds
        node[leaf] = value
    return out


def _plain(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


@pytest.mark.parametrize("name", sorted(BEFORE["train"]))
def test_every_recipe_file_is_the_old_preset(name):
    assert _plain(PRESETS[name]) == _expected(name, BEFORE["train"][name])
    # the order help texts list them
    assert list(PRESETS) == ["exercise", "cpu", "cpu-bf16", "rotation", "vit", "fsdd", "sound"]


def test_cpu_bf16_is_the_old_cpu_recipe():
    """Issue 26 moved issue 14's winner (the cpu recipe of bf16 CPUs) to cpu-bf16."""
    assert _plain(PRESETS["cpu-bf16"]) == _expected("cpu-bf16", BEFORE["train"]["cpu"])


def test_resolved_detect_and_study_configs_are_the_old_ones():
    old = BEFORE["resolved"]
    assert _plain(resolve("detect")) == _expected("detect", old["detect"])
    assert _plain(resolve("detect", "sound", overrides=["detect.k=4", "data.size=8", "train.epochs=2"])) \
        == _expected("detect_sound", old["detect_sound"])
    assert _plain(resolve("detect", overrides=[*view_overrides("crop_raw"), "detect.detector=vicreg_terms",
                                               "autoencoder.epochs=3", "dcase.depth=2"])) \
        == _expected("detect", old["detect_crop_raw"])
    assert _plain(resolve("study", "cpu")) == _expected("study_cpu", old["study_cpu"])
    assert _plain(resolve("study", "exercise")) == _expected("study_exercise", old["study_exercise"])
    assert _plain(resolve("study", "cpu", overrides=[
        "train.epochs=2", "latent.graph_k=5", "eval.knn_k=7", "study.neighbour_epochs=2", "detect.views=3",
        "study.detect_epochs=2", "data.data_dir=/data/x"])) == _expected("study_cpu_over", old["study_cpu_over"])
    assert _plain(resolve("train", "fsdd", overrides=["sound.n_mels=32", "optim.betas=0.8,0.9"])) \
        == _expected("train_fsdd_over", old["train_fsdd_over"])
    assert list(STUDY_PRESETS) == ["exercise", "cpu"]


def test_the_detect_schema_does_not_depend_on_a_recipe():
    assert DetectConfig().recipe == Config()  # resolve("detect") fills the recipe from recipes/detect.toml
    assert resolve("detect").recipe == PRESETS["cpu"]


def test_a_saved_detector_config_reads_back_by_the_same_walk():
    cfg = resolve("detect", "sound", overrides=["detect.k=5", "data.normal_classes=cat,dog", "dcase.depth=2"])
    names = ("knn", "other")
    assert DetectConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))), "config.json", names) == cfg
    with pytest.raises(ViclabError, match=r"config.json: detect.k='many' is not a valid int \(edit the file back"):
        DetectConfig.from_dict({**dataclasses.asdict(cfg), "k": "many"}, "config.json", names)
    with pytest.raises(ViclabError, match="config.json: detect.detector='knnn' is unknown; use knn, other"):
        DetectConfig.from_dict({**dataclasses.asdict(cfg), "detector": "knnn"}, "config.json", names)
    with pytest.raises(ViclabError, match="config.json is not a detector config"):
        DetectConfig.from_dict({"k": 2}, "config.json", names)


def test_a_toml_file_addresses_sections_as_the_command_line(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('preset = "fsdd"\n[detect]\nk = 7\n[train]\nepochs = 3\n[data]\nsize = 16\n')
    cfg = resolve("detect", toml=str(p), overrides=["detect.k=9"])
    assert (cfg.k, cfg.recipe.train.epochs, cfg.data.size, cfg.recipe.data.dataset) == (9, 3, 16, "fsdd")
    assert resolve("detect", "sound", toml=str(p)).recipe.data.dataset == "mimii"  # the command line's preset wins


def test_exercise_preset_is_spec_section_2():
    c = resolve("train", "exercise")
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
    c = resolve("train", "cpu", overrides=["optim.lr=1e-3", "train.epochs=3", "augment.crop_scale=0.08,1",
                                         "model.compile=true", "data.data_dir=/x", "data.data_dir=none"])
    assert c.optim.lr == 1e-3 and c.train.epochs == 3 and c.augment.crop_scale == (0.08, 1.0)
    assert c.model.compile is True and c.data.data_dir is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optim.lr = 2.0  # type: ignore[misc]


def test_toml_then_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('preset = "cpu"\n[optim]\nlr = 0.01\n[augment]\nsolarize_p = 0.2\ncrop_scale = [0.1, 0.9]\n')
    c = resolve("train", None, str(p), ["optim.lr=0.02"])
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
        resolve("train", "exercise", overrides=[override])


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(ViclabError, match="unknown preset 'big'"):
        resolve("train", "big")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr=")
    with pytest.raises(ViclabError, match="cannot read config file"):
        resolve("train", None, str(bad))
    with pytest.raises(ViclabError, match="does not exist"):
        resolve("train", None, str(tmp_path / "missing.toml"))


def test_resume_starts_from_the_base_unless_a_preset_is_named():
    base = resolve("train", "vit", overrides=["train.epochs=7"])
    assert resolve("train", base=base, overrides=["optim.lr=1e-3"]) == dataclasses.replace(
        base, optim=dataclasses.replace(base.optim, lr=1e-3))
    assert resolve("train", "cpu", base=base) == PRESETS["cpu"]


def test_json_round_trip():
    c = resolve("train", "cpu", overrides=["augment.solarize_p=0.1"])
    assert Config.from_dict(dataclasses.asdict(c)) == c
