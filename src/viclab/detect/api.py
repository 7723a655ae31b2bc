"""Fit a detector on normal images, save it as a folder, load it back.

A detector folder::

    DET/config.json           the resolved DetectConfig
    DET/meta.json             git commit, versions, device, command line
    DET/data.json             fingerprints of the normal images it fitted on, held out and tests, and of a given encoder
    DET/train/                the run folder of its network's training (VICReg or autoencoder), if any
    DET/model.safetensors     the frozen network, its config in the metadata
    DET/reference.safetensors the normal statistics
    DET/holdout_scores.npy    the scores of the held-out normal images (threshold calibration)
    DET/detector.json         format version, sizes, the held-out normal scores' threshold (written last)
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import viclab
from viclab.config import (
    AutoencoderConfig,
    Config,
    DcaseConfig,
    DetectConfig,
    DetectDataConfig,
    SoundConfig,
    check_detector,
    load_toml,
    resolve,
)
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.io import atomic_save_npy, atomic_write, atomic_write_text, check_writable_dir, tensor_file_sha256
from viclab.core.metrics import threshold_at_fpr
from viclab.core.runtime import Runtime, require_one_process, select_runtime
from viclab.data import ImageData, dataset_modality
from viclab.data.types import data_fingerprint
from viclab.detect.data import load_normal, load_test, normal_pool
from viclab.detect.detectors import (
    DETECTORS,
    Detector,
    build_reconstructor,
    check_machine_ids,
    train_autoencoder,
    train_dcase,
    train_machine_id,
)
from viclab.engine import train
from viclab.engine.checkpoint import load_checkpoint, load_state
from viclab.engine.rundir import (
    CHECKPOINT,
    CONFIG,
    ENCODER,
    METRICS,
    RunFolder,
    config_diff,
    config_json,
    read_config,
    run_kind,
    write_run_files,
)
from viclab.engine.vicreg import check_shift
from viclab.models import SpecClassifier, build_backbone, build_model, check_inputs, fit_standardizers
from viclab.represent.encode import PRETRAINED_PREFIX, RANDOM_PREFIX, load_source, state_sha256
from viclab.represent.layers import StagePool

FORMAT = "2"  # bump when a detector folder's content changes meaning (2: sound; the network's input shape)
MODEL, REFERENCE, SUMMARY, DATA, TRAIN, HOLDOUT = (
    "model.safetensors", "reference.safetensors", "detector.json", "data.json", "train", "holdout_scores.npy")


def scoring_runtime(cfg: DetectConfig) -> Runtime:
    """Where and how precisely a detector scores: the recipe's device, ``cfg.precision``."""
    return select_runtime(cfg.recipe.train.device, cfg.precision)


def _save_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"format": FORMAT, **metadata}))


def _load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except FileNotFoundError:
        raise ViclabError(f"{path} is missing: the detector folder is incomplete; fit it again") from None
    except Exception as e:  # a damaged header raises anything
        raise ViclabError(f"cannot read {path} ({type(e).__name__}); the detector folder is damaged, fit it "
                          "again") from None


RECONSTRUCTORS = ("autoencoder", "dcase")  # network kinds trained to reconstruct their inputs
OWN_NETWORK = (*RECONSTRUCTORS, "machine_id")  # network kinds a detector always trains itself


def noun(data: ImageData) -> str:
    """What a message calls the items of ``data``: sound clips arrive as log-mel spectrograms."""
    return "clips" if data.modality == "spectrogram" else "images"


def build_network(kind: str, config: dict[str, Any], origin: str) -> tuple[nn.Module, Config | None]:
    """An untrained network of ``kind`` from its saved config (``model.safetensors`` metadata)."""
    if kind == "machine_id":
        return SpecClassifier(tuple(config["classes"])), None
    if kind in RECONSTRUCTORS:
        ae = AutoencoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["autoencoder"].items()})
        return build_reconstructor(kind, config["input"], ae, DcaseConfig(**config["dcase"])), None
    net_cfg = Config.from_dict(config, origin=origin)
    network, _ = build_model(net_cfg) if kind == "vicreg" else build_backbone(net_cfg.model.backbone)
    return network, net_cfg


def _vicreg_from_run(run_dir: Path) -> tuple[nn.Module, Config]:
    """The whole VICReg model (encoder and projector) of a training run folder, from its checkpoint."""
    cfg = read_config(run_dir)
    model, _ = build_model(cfg)
    ckpt = load_checkpoint(run_dir / CHECKPOINT, keys=("model",))
    load_state(model, ckpt["model"], run_dir / CHECKPOINT, "the run folder is damaged; train it again")
    return model, cfg


def _given_network(cfg: DetectConfig, kind: str) -> tuple[nn.Module, Config]:
    """``cfg.encoder``'s network: a run folder's VICReg model or encoder, a .safetensors encoder, random:BACKBONE."""
    path = Path(cfg.encoder)
    if kind == "vicreg":
        if not (path.is_dir() and (path / CONFIG).exists() and (path / CHECKPOINT).exists()):
            raise ViclabError(f"detect.encoder={cfg.encoder}: vicreg_terms needs a VICReg training run folder (it "
                              "scores with the projector too, kept in the run's checkpoint.pt); give one, or none "
                              "to train VICReg on the normal images")
        if not (path / ENCODER).exists():
            raise ViclabError(f"detect.encoder={cfg.encoder} has not finished training (no {ENCODER}); finish it "
                              f"with 'viclab train --resume {path}'")
        return _vicreg_from_run(path)
    source = load_source(cfg.encoder, seed=cfg.seed)
    if source.module is None:
        raise ViclabError(f"detect.encoder={cfg.encoder} is a table of {source.kind} representations with no encoder "
                          "for new images; give a run folder of viclab train, a .safetensors encoder or "
                          "random:BACKBONE")
    return source.module, source.config


def _train_network(cfg: DetectConfig, kind: str, fit: ImageData, holdout: ImageData, folder: Path,
                   ctx: Context) -> tuple[nn.Module, Config | None]:
    """The detector's network trained on the normal images, in the run folder ``DET/train``."""
    run_dir = folder / TRAIN
    if kind in OWN_NETWORK:
        rt = select_runtime(cfg.recipe.train.device, cfg.recipe.train.precision)
        if kind == "machine_id":
            return train_machine_id(cfg.machine_id, fit, run_dir, rt, ctx), None
        if kind == "dcase":
            return train_dcase(cfg.dcase, fit.images, run_dir, rt, ctx), None
        return train_autoencoder(cfg.autoencoder, fit.images, run_dir, rt, ctx, modality=fit.modality), None
    # VICReg at the detector's image size, with test terms on the held-out normal images when there are 2 or more.
    r = cfg.recipe
    size = cfg.data.size if holdout.modality == "image" else r.augment.size
    recipe = dataclasses.replace(r, augment=dataclasses.replace(r.augment, size=size),
                                 train=dataclasses.replace(r.train, eval_test=len(holdout) >= 2))
    test = holdout if recipe.train.eval_test else None
    train(recipe, run_dir, resume=(run_dir / CONFIG).exists(), ctx=ctx, data=(fit, test))
    model, recipe = _vicreg_from_run(run_dir)
    return (model if kind == "vicreg" else model.encoder), recipe


def _check_inputs(cfg: DetectConfig, kind: str, fit: ImageData) -> tuple[nn.Module, Config] | None:
    """Every input check that can fail, before anything is written; returns ``cfg.encoder``'s network or None."""
    if cfg.detector == "knn" and cfg.k > len(fit):
        raise ViclabError(f"detect.k={cfg.k} is larger than the {len(fit)} normal {noun(fit)} to fit on; use "
                          f"detect.k={len(fit)} or fewer")
    if kind in OWN_NETWORK:
        if cfg.encoder is not None:
            raise ViclabError(f"the {cfg.detector} detector trains its own network on the normal data; drop --encoder")
        if kind == "machine_id":
            check_machine_ids(fit, cfg.machine_id)
            return None
        build_reconstructor(kind, fit.images.shape[1:], cfg.autoencoder, cfg.dcase)  # checks the input shape
        return None
    if cfg.encoder is None:
        check_inputs(cfg.recipe.model.backbone, fit)
        check_shift(cfg.recipe, fit)
        if cfg.recipe.train.batch_size > len(fit):
            raise ViclabError(f"train.batch_size={cfg.recipe.train.batch_size} is larger than the {len(fit)} normal "
                              f"{noun(fit)} to fit on; use train.batch_size={len(fit)} or fewer")
        if cfg.layers == "all" and DETECTORS[cfg.detector].reads_layers:
            StagePool(build_backbone(cfg.recipe.model.backbone)[0])  # refuses an encoder that names no stages
        return None
    network, net_cfg = _given_network(cfg, kind)
    _check_network(cfg, network.encoder if kind == "vicreg" else network, network)
    check_inputs(net_cfg.model.backbone, fit)
    if fit.modality == "spectrogram":
        if net_cfg.sound != cfg.recipe.sound and not cfg.encoder.startswith(RANDOM_PREFIX):
            raise ViclabError(f"the encoder {cfg.encoder} was trained on log-mel spectrograms of other settings "
                              f"({'; '.join(config_diff(json.loads(config_json(net_cfg.sound)), cfg.recipe.sound))}); "
                              "give the detector the same sound.* settings")
    elif net_cfg.augment.size != cfg.data.size and not cfg.encoder.startswith(RANDOM_PREFIX):
        raise ViclabError(f"the encoder {cfg.encoder} was trained on {net_cfg.augment.size}-pixel views; use "
                          f"data.size={net_cfg.augment.size}")
    return network, net_cfg


def _check_network(cfg: DetectConfig, encoder: nn.Module, model: nn.Module) -> None:
    """What a detector needs of a given network: named stages for ``detect.layers=all``, a shift head for
    ``shift``."""
    if cfg.layers == "all" and DETECTORS[cfg.detector].reads_layers:
        StagePool(encoder)  # refuses an encoder that names no stages
    if cfg.detector == "shift" and getattr(model, "shift_head", None) is None:
        raise ViclabError(f"detect.encoder={cfg.encoder} was trained without a shift objective, and the shift detector "
                          "scores with its rotation head; give a run of train.objective=rotation or shift, or none "
                          "to train one")


def data_record(cfg: DetectDataConfig, sound: SoundConfig, fit: ImageData, holdout: ImageData) -> dict[str, Any]:
    """Fingerprints of the items a detector fits on, holds out, and (folder data) tests as normal: a detector is
    scored only on the very split it was fitted with."""
    record = {"normal_images": data_fingerprint(fit), "holdout": data_fingerprint(holdout), "fit": len(fit),
              "held_out": len(holdout)}
    if cfg.normal is not None:
        record["normal_test"] = data_fingerprint(normal_pool(cfg, sound)[1])
    return record


def absolute_paths(cfg: DetectDataConfig) -> DetectDataConfig:
    """``cfg`` with its folders (and ``anomalies`` when it names a folder) made absolute: a detector scores from
    any working directory."""
    folders = [f for f in ("normal", "normal_test", "abnormal", "data_dir") if getattr(cfg, f) is not None]
    if cfg.anomalies is not None and Path(cfg.anomalies).expanduser().exists():
        folders.append("anomalies")
    return dataclasses.replace(cfg, **{f: str(Path(getattr(cfg, f)).expanduser().resolve()) for f in folders})


def check_data(folder: str | Path, cfg: DetectDataConfig, sound: SoundConfig) -> None:
    """Refuse to score with a detector whose normal images moved or changed since it was fitted (a changed
    folder would reshuffle the held-out split and leak fitted images into the normal test set)."""
    for field in ("normal", "normal_test"):
        path = getattr(cfg, field)
        if path is not None and not Path(path).expanduser().is_dir():
            raise ViclabError(f"the {field.replace('_', '-')} folder {path} that {folder} was fitted on no longer "
                              "exists (moved or deleted); put it back there, or fit the detector again on its new "
                              "place")
    try:
        saved = json.loads((Path(folder) / DATA).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ViclabError(f"cannot read {Path(folder) / DATA} ({e}); the detector folder is damaged, fit it again") \
            from None
    now = data_record(cfg, sound, *load_normal(cfg, sound))
    if changed := [k for k in now if k in saved and saved[k] != now[k]]:
        raise ViclabError(f"the normal data of {folder} changed since it was fitted ({', '.join(changed)} differ); "
                          "fit the detector again")


def _check_folder(folder: Path, cfg: DetectConfig, record: dict[str, Any]) -> tuple[bool, bool]:
    """``(already fitted, resumed)``: whether ``folder`` holds this detector fitted, or half-fitted. A folder of
    another config, normal data or encoder is refused once anything was computed there (:meth:`RunFolder.inspect`)."""
    state = RunFolder.inspect(folder, (f"{TRAIN}/{CHECKPOINT}", f"{TRAIN}/{METRICS}"), (SUMMARY,))  # started: trained
    if state.foreign:
        raise ViclabError(f"{folder} already exists and is not a detector folder; choose another --out")
    if not state.configured:
        return False, False
    kind = run_kind(folder)
    if kind != "detector":
        raise ViclabError(f"{folder} holds a {kind} run, not a detector; choose another --out")
    try:
        saved = json.loads((folder / CONFIG).read_text())
        data = json.loads((folder / DATA).read_text()) if (folder / DATA).exists() else None
        diffs = config_diff(saved, cfg) if isinstance(saved, dict) else ["config.json is not a config"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        diffs, data = ["unreadable config.json"], None
    same = not diffs and data == record
    if not same and (state.finished or state.started):
        what = "another config (" + "; ".join(diffs[:3]) + ")" if diffs else "other normal images or another encoder"
        raise ViclabError(f"{folder} holds a detector of {what}; choose another --out")
    if state.finished:
        try:
            fmt = json.loads((folder / SUMMARY).read_text()).get("format")
        except (OSError, json.JSONDecodeError, AttributeError):
            fmt = None
        if fmt != FORMAT:
            raise ViclabError(f"{folder} holds a detector of another viclab version (format {fmt}); delete it or "
                              "choose another --out")
    return same and state.finished, state.started


def fit_config(preset: str | None = None, toml: str | None = None,
               overrides: Sequence[str | tuple[str, Any]] = ()) -> DetectConfig:
    """The config ``viclab detect fit`` fits (:func:`viclab.config.resolve`): its network trains with the
    recipe ``preset``, else the TOML file's, else the detector's and data's: ``rotation`` for the shift detector,
    the images' default (``recipes/detect.toml``), ``fsdd`` for FSDD, ``sound`` for other sounds."""
    preset = preset or (load_toml(toml).get("preset") if toml else None)
    cfg = resolve("detect", preset, toml, overrides)
    data = cfg.data.normal or cfg.data.dataset
    if preset is None and dataset_modality(data) != "image":
        cfg = resolve("detect", "fsdd" if data == "fsdd" else "sound", toml, overrides)
    elif preset is None and cfg.detector == "shift":
        cfg = resolve("detect", "rotation", toml, overrides)
    return cfg


def native_size(cfg: DetectConfig, data: DetectDataConfig) -> DetectDataConfig:
    """A published checkpoint (``pretrained:BACKBONE:FILE``) sees images at the size it was trained on."""
    if cfg.encoder is None or not cfg.encoder.startswith(PRETRAINED_PREFIX):
        return data
    return dataclasses.replace(data, size=load_source(cfg.encoder).config.augment.size)


def objective_of(cfg: DetectConfig) -> Config:
    """The recipe a detector trains its own network with: the shift detector's needs a shift objective (``shift``
    unless the recipe names ``rotation``)."""
    if cfg.detector == "shift" and cfg.encoder is None and cfg.recipe.train.objective == "vicreg":
        return dataclasses.replace(cfg.recipe, train=dataclasses.replace(cfg.recipe.train, objective="shift"))
    return cfg.recipe


def fit_detector(cfg: DetectConfig, folder: str | Path, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Fit ``cfg.detector`` on the normal images of ``cfg.data`` and save it in ``folder``.

    Continues a folder that holds this detector half-fitted (from its last checkpoint); a finished one is returned.

    Returns:
        The summary (``detector.json``): sizes, times, and the threshold at ``cfg.fpr`` on held-out normal items.
    """
    require_one_process("fitting a detector")
    check_detector(cfg.detector, DETECTORS)
    folder = check_writable_dir(Path(folder), "detector folder")
    cfg = dataclasses.replace(cfg, data=native_size(cfg, absolute_paths(cfg.data)), recipe=objective_of(cfg))
    t0 = time.perf_counter()
    fit, holdout = load_normal(cfg.data, cfg.recipe.sound)
    if cfg.data.abnormal is not None or cfg.data.anomalies is not None:
        load_test(cfg.data, sound=cfg.recipe.sound)  # a wrong test folder or dataset fails now, not after training
    cls = DETECTORS[cfg.detector]
    given = _check_inputs(cfg, cls.network_kind, fit)
    record = data_record(cfg.data, cfg.recipe.sound, fit, holdout) | {
        "encoder_sha256": state_sha256(given[0]) if given else None}
    fitted, resumed = _check_folder(folder, cfg, record)
    if fitted:
        ctx.echo(f"{folder}: already fitted")
        return json.loads((folder / SUMMARY).read_text())
    rt = scoring_runtime(cfg)
    if not resumed:
        shutil.rmtree(folder / TRAIN, ignore_errors=True)  # an attempt that never trained: nothing to lose
    write_run_files(folder, cfg, rt, resumed=resumed)
    atomic_write_text(folder / DATA, json.dumps(record, indent=2) + "\n")
    network, net_cfg = given or _train_network(cfg, cls.network_kind, fit, holdout, folder, ctx)
    t_net = time.perf_counter() - t0
    det = cls(cfg, network, rt, recipe=net_cfg)
    held = _fit_reference(det, fit, holdout, ctx)
    threshold = threshold_at_fpr(held, cfg.fpr) if len(held) else None
    if len(held):
        _warn_coarse_threshold(len(held), cfg.fpr, noun(fit))
        # Kept: 'detect score --fpr' calibrates a threshold at any rate from them.
        atomic_save_npy(folder / HOLDOUT, np.asarray(held, dtype=np.float64))
    summary = _save(folder, det, fit, held, threshold, len(holdout), (t0, t_net))
    ctx.echo(f"{cfg.detector} detector fitted on {len(fit)} normal {noun(fit)} in {summary['seconds']['total']:.0f}s "
             f"-> {folder}" + (f"; threshold {threshold:.4g} at {cfg.fpr:.0%} held-out FPR" if threshold is not None
                               else ""))
    return summary


def _fit_reference(det: Detector, fit: ImageData, holdout: ImageData, ctx: Context) -> np.ndarray:
    """Fit ``det``'s normal statistics on ``fit``; returns the ``(H,)`` scores of the held-out normal items."""
    # A given encoder that standardises spectrograms but never trained on them (random:spec_cnn) takes their stats.
    fit_standardizers(det.network, fit.images.to(det.rt.device))
    det.fit_reference(fit.images, ctx)
    _check_finite(det.reference, f"the normal {noun(fit)} give non-finite statistics")
    held = det.score_data(holdout, ctx)["score"] if len(holdout) else np.empty(0)
    _check_finite({"held-out scores": held}, f"the held-out normal {noun(fit)} get non-finite scores")
    return held


def _save(folder: Path, det: Detector, fit: ImageData, held: np.ndarray, threshold: float | None, n_holdout: int,
          times: tuple[float, float]) -> dict[str, Any]:
    """Write the network, the reference and, last, ``detector.json``; ``times``: ``(start, network seconds)``."""
    cfg, kind = det.cfg, det.network_kind
    config = ({"autoencoder": dataclasses.asdict(cfg.autoencoder), "dcase": dataclasses.asdict(cfg.dcase),
               "input": list(fit.images.shape[1:]), "classes": list(getattr(det.network, "classes", ()))}
              if kind in OWN_NETWORK else json.loads(det.recipe.to_json()))
    _save_tensors(folder / MODEL, det.network.state_dict(), {"network": kind, "config": json.dumps(config)})
    _save_tensors(folder / REFERENCE, det.reference, {"detector": cfg.detector})
    summary = {"format": FORMAT, "viclab": viclab.__version__, "detector": cfg.detector, "network": kind,
               "encoder": cfg.encoder, "normal_fit": len(fit), "normal_holdout": n_holdout,
               "threshold": threshold, "threshold_fpr": cfg.fpr if threshold is not None else None,
               "holdout_scores": {"mean": float(np.mean(held)), "std": float(np.std(held))} if len(held) else None,
               "seconds": {"network": times[1], "total": time.perf_counter() - times[0]},
               "model_sha256": tensor_file_sha256(folder / MODEL)}
    atomic_write_text(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def _check_finite(tensors: dict[str, Any], problem: str, fix: str = "check them, or use another encoder") -> None:
    """Refuse NaN or infinite statistics: every score and threshold made from them would be meaningless."""
    for name, t in tensors.items():
        finite = bool(torch.isfinite(t).all()) if isinstance(t, Tensor) else np.isfinite(np.asarray(t, float)).all()
        if not finite:
            raise ViclabError(f"{problem} (NaN or inf in {name}); {fix}")


def _warn_coarse_threshold(n_held: int, fpr: float, unit: str) -> None:
    """With fewer than 1 / fpr held-out scores the threshold is simply their maximum: its false-positive
    rate on new normal data is then not ``fpr`` but about 1 / (n + 1) (the order statistic's expectation)."""
    if n_held * fpr < 1:
        need = math.ceil(1 / fpr) if fpr > 0 else None
        warnings.warn(f"only {n_held} held-out normal {unit} calibrate the threshold, so at detect.fpr={fpr:g} it is "
                      f"their maximum (expected false-positive rate about {1 / (n_held + 1):.0%}, not {fpr:g}); "
                      + (f"hold out at least {need} (raise data.holdout or add normal data)" if need else
                         "add normal data"), ViclabWarning, stacklevel=3)


def calibrated_threshold(folder: str | Path, fpr: float) -> float:
    """The threshold at false-positive rate ``fpr`` on a fitted detector's held-out normal images."""
    path = Path(folder) / HOLDOUT
    if not path.exists():
        raise ViclabError(f"{folder} kept no held-out normal images (fitted with data.holdout=0), so no threshold can "
                          "be calibrated; fit it with data.holdout above 0, e.g. 0.1")
    held = np.load(path)
    _check_finite({HOLDOUT: held}, f"the detector folder {folder} holds non-finite scores",
                  "the folder is damaged; fit it again")
    _warn_coarse_threshold(len(held), fpr, "items")
    return threshold_at_fpr(held, fpr)


def load_detector(folder: str | Path, rt: Runtime | None = None) -> tuple[Detector, dict[str, Any]]:
    """A saved detector and its summary.

    Raises:
        ViclabError: not a detector folder, unfinished, damaged, or written by another format version.
    """
    folder = Path(folder)
    if not (folder / SUMMARY).exists():
        what = "an unfinished detector (fit it again with the same command)" if (folder / CONFIG).exists() \
            else "not a detector folder (no detector.json)"
        raise ViclabError(f"{folder} is {what}; give a folder written by 'viclab detect fit'")
    try:
        summary = json.loads((folder / SUMMARY).read_text())
        saved = json.loads((folder / CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ViclabError(f"cannot read {folder} ({e}); the detector folder is damaged, fit it again") from None
    for path, value in ((folder / SUMMARY, summary), (folder / CONFIG, saved)):
        if not isinstance(value, dict):
            raise ViclabError(f"{path} holds a {type(value).__name__}, not an object; the detector folder is damaged, "
                              "fit it again")
    if summary.get("format") != FORMAT:
        raise ViclabError(f"{folder} was written by another version of viclab (detector format "
                          f"{summary.get('format')}, this version reads {FORMAT}); fit it again with this version")
    cfg = DetectConfig.from_dict(saved, str(folder / CONFIG), DETECTORS)
    cls = DETECTORS[cfg.detector]
    state, meta = _load_tensors(folder / MODEL)
    reference, ref_meta = _load_tensors(folder / REFERENCE)
    _check_finite({f"{REFERENCE}:{k}": v for k, v in reference.items()},
                  f"the detector folder {folder} holds non-finite statistics",
                  "its normal data held NaN or inf; fit it again on finite data")
    if meta.get("format") != FORMAT or ref_meta.get("format") != FORMAT or meta.get("network") != cls.network_kind:
        raise ViclabError(f"{folder}: its weights files do not match its detector.json (format or network); fit it "
                          "again")
    try:
        network, net_cfg = build_network(cls.network_kind, json.loads(meta["config"]), str(folder / MODEL))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ViclabError(f"{folder / MODEL}: its config metadata is damaged; fit the detector again") from None
    load_state(network, state, folder / MODEL, "the detector folder is damaged; fit it again")
    return cls(cfg, network, rt or scoring_runtime(cfg), reference, recipe=net_cfg), summary
