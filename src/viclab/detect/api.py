"""Fit a detector on normal images, save it as a folder, load it back.

A detector folder::

    DET/config.json           the resolved DetectConfig
    DET/meta.json             git commit, versions, device, command line
    DET/data.json             the fingerprint of the normal images it was fitted on
    DET/train/                the run folder of its network's training (VICReg or autoencoder), if any
    DET/model.safetensors     the frozen network, its config in the metadata
    DET/reference.safetensors the normal statistics
    DET/detector.json         format version, sizes, the held-out normal scores' threshold (written last)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

import viclab
from viclab.config import AutoencoderConfig, Config, DetectConfig, detect_config_from_dict
from viclab.data import ImageData
from viclab.data.types import data_fingerprint
from viclab.detect.autoencoder import train_autoencoder
from viclab.detect.data import load_normal, load_test
from viclab.detect.detectors import DETECTORS, Detector
from viclab.detect.metrics import threshold_at_fpr
from viclab.errors import ViclabError
from viclab.eval.features import load_source
from viclab.io import atomic_write, atomic_write_text, check_writable_dir, tensor_file_sha256
from viclab.models import build_vicreg_model
from viclab.models.autoencoder import build_autoencoder
from viclab.runtime import Runtime, require_one_process, select_runtime
from viclab.train import train
from viclab.train.checkpoint import load_checkpoint, load_state
from viclab.train.rundir import CHECKPOINT, CONFIG, config_diff, read_config, write_run_files

FORMAT = "1"  # bump when a detector folder's content changes meaning
MODEL, REFERENCE, SUMMARY, DATA, TRAIN = (
    "model.safetensors", "reference.safetensors", "detector.json", "data.json", "train")


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


def _network_config(kind: str, cfg: DetectConfig, net_cfg: Config | None) -> dict[str, Any]:
    if kind == "autoencoder":
        return {"autoencoder": dataclasses.asdict(cfg.autoencoder), "size": cfg.data.size}
    return json.loads(net_cfg.to_json())


def build_network(kind: str, config: dict[str, Any], origin: str) -> tuple[nn.Module, Config | None]:
    """An untrained network of ``kind`` from its saved config (``model.safetensors`` metadata)."""
    if kind == "autoencoder":
        ae = AutoencoderConfig(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in config["autoencoder"].items()})
        return build_autoencoder(int(config["size"]), ae.widths, ae.latent)[0], None
    net_cfg = Config.from_dict(config, origin=origin)
    if kind == "vicreg":
        return build_vicreg_model(net_cfg.model)[0], net_cfg
    from viclab.models import build_backbone

    return build_backbone(net_cfg.model.backbone)[0], net_cfg


def _vicreg_from_run(run_dir: Path) -> tuple[nn.Module, Config]:
    """The whole VICReg model (encoder and projector) of a training run folder, from its checkpoint."""
    cfg = read_config(run_dir)
    model, _ = build_vicreg_model(cfg.model)
    ckpt = load_checkpoint(run_dir / CHECKPOINT, keys=("model",))
    load_state(model, ckpt["model"], run_dir / CHECKPOINT, "the run folder is damaged; train it again")
    return model, cfg


def _given_network(cfg: DetectConfig, kind: str) -> tuple[nn.Module, Config]:
    """The network ``cfg.encoder`` names: a training run folder's VICReg model or encoder, a
    ``.safetensors`` encoder, or ``random:BACKBONE``."""
    path = Path(cfg.encoder)
    if kind == "vicreg":
        if not (path.is_dir() and (path / CONFIG).exists() and (path / CHECKPOINT).exists()):
            raise ViclabError(f"detect.encoder={cfg.encoder}: vicreg_terms needs a VICReg training run folder (it "
                              "scores with the projector too, kept in the run's checkpoint.pt); give one, or none "
                              "to train VICReg on the normal images")
        return _vicreg_from_run(path)
    source = load_source(cfg.encoder, seed=cfg.seed)
    if source.module is None:
        raise ViclabError(f"detect.encoder={cfg.encoder} is a table of {source.kind} representations with no encoder "
                          "for new images; give a run folder of viclab train, a .safetensors encoder or "
                          "random:BACKBONE")
    return source.module, source.config


def _train_network(cfg: DetectConfig, kind: str, fit: ImageData, holdout: ImageData, folder: Path, progress: bool,
                   echo: Callable[[str], None]) -> tuple[nn.Module, Config | None]:
    """The detector's network trained on the normal images, in the run folder ``DET/train``."""
    run_dir = folder / TRAIN
    if kind == "autoencoder":
        rt = select_runtime(cfg.recipe.train.device, cfg.recipe.train.precision)
        return train_autoencoder(cfg.autoencoder, fit.images, cfg.data.size, run_dir, rt, progress, echo), None
    recipe = dataclasses.replace(cfg.recipe, augment=dataclasses.replace(cfg.recipe.augment, size=cfg.data.size))
    if recipe.train.batch_size > len(fit):
        raise ViclabError(f"train.batch_size={recipe.train.batch_size} is larger than the {len(fit)} normal images "
                          f"to fit on; use train.batch_size={len(fit)} or fewer")
    test = holdout if len(holdout) >= 2 else None
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, eval_test=test is not None))
    resume = (run_dir / CONFIG).exists()
    train(recipe, run_dir, resume=resume, progress=progress, echo=echo, data=(fit, test))
    model, recipe = _vicreg_from_run(run_dir)
    return (model if kind == "vicreg" else model.encoder), recipe


def _check_folder(folder: Path, cfg: DetectConfig, fingerprint: str) -> bool:
    """Whether ``folder`` already holds this fitted detector. A folder of another config or other
    normal images is refused (its training may have run: never mixed with this one)."""
    if not (folder / CONFIG).exists():
        if folder.exists() and any(folder.iterdir()):
            raise ViclabError(f"{folder} already exists and is not a detector folder; choose another --out")
        return False
    try:
        saved = json.loads((folder / CONFIG).read_text())
        data = json.loads((folder / DATA).read_text())["normal_images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ViclabError(f"{folder} holds a damaged detector folder; delete it or choose another --out") from None
    diffs = config_diff(saved, cfg)
    if diffs:
        raise ViclabError(f"{folder} holds a detector of another config ({'; '.join(diffs[:3])}); choose another "
                          "--out")
    if data != fingerprint:
        raise ViclabError(f"{folder} holds a detector fitted on other normal images; choose another --out")
    return (folder / SUMMARY).exists()


def fit_detector(cfg: DetectConfig, folder: str | Path, progress: bool = True,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit ``cfg.detector`` on the normal images of ``cfg.data`` and save it in ``folder``.

    Continues a folder that holds this detector half-fitted (its training from the last
    checkpoint); a finished one is returned as it is.

    Returns:
        The summary (``detector.json``): sizes, times, and the threshold at ``cfg.fpr`` on the
        held-out normal images.
    """
    require_one_process("fitting a detector")
    folder = Path(folder)
    check_writable_dir(folder, "detector folder")
    t0 = time.perf_counter()
    fit, holdout = load_normal(cfg.data)
    if cfg.data.abnormal is not None or cfg.data.anomalies is not None:
        load_test(cfg.data)  # a wrong test folder or dataset fails now, not after the training
    if cfg.detector == "knn" and cfg.k > len(fit):
        raise ViclabError(f"detect.k={cfg.k} is larger than the {len(fit)} normal images to fit on; use "
                          f"detect.k={len(fit)} or fewer")
    fingerprint = data_fingerprint(fit)
    if _check_folder(folder, cfg, fingerprint):
        echo(f"{folder}: already fitted")
        return json.loads((folder / SUMMARY).read_text())
    cls = DETECTORS[cfg.detector]
    rt = scoring_runtime(cfg)
    # A given network is read (and checked) before anything is written.
    given = _given_network(cfg, cls.network_kind) if cfg.encoder is not None and cls.network_kind != "autoencoder" \
        else None
    write_run_files(folder, cfg, rt, resumed=(folder / CONFIG).exists())
    atomic_write_text(folder / DATA, json.dumps({"normal_images": fingerprint, "fit": len(fit),
                                                 "holdout": len(holdout)}, indent=2) + "\n")
    network, net_cfg = given or _train_network(cfg, cls.network_kind, fit, holdout, folder, progress, echo)
    t_net = time.perf_counter() - t0
    augment = net_cfg.augment if net_cfg is not None else cfg.recipe.augment
    det = cls(cfg, network, augment, rt)
    det.fit_reference(fit.images, progress)
    held = det.score(holdout.images, progress)["score"] if len(holdout) else np.empty(0)
    threshold = threshold_at_fpr(held, cfg.fpr) if len(held) else None
    _save_tensors(folder / MODEL, network.state_dict(), {
        "network": cls.network_kind, "config": json.dumps(_network_config(cls.network_kind, cfg, net_cfg))})
    _save_tensors(folder / REFERENCE, det.reference, {"detector": cfg.detector})
    summary = {
        "format": FORMAT, "viclab": viclab.__version__, "detector": cfg.detector, "network": cls.network_kind,
        "encoder": cfg.encoder, "normal_fit": len(fit), "normal_holdout": len(holdout),
        "threshold": threshold, "threshold_fpr": cfg.fpr if threshold is not None else None,
        "holdout_scores": {"mean": float(np.mean(held)), "std": float(np.std(held))} if len(held) else None,
        "seconds": {"network": t_net, "total": time.perf_counter() - t0},
        "model_sha256": tensor_file_sha256(folder / MODEL),
    }
    atomic_write_text(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    echo(f"{cfg.detector} detector fitted on {len(fit)} normal images in {summary['seconds']['total']:.0f}s -> "
         f"{folder}" + (f"; threshold {threshold:.4g} at {cfg.fpr:.0%} held-out FPR" if threshold is not None else ""))
    return summary


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
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        found = summary.get("format") if isinstance(summary, dict) else None
        raise ViclabError(f"{folder} was written by another version of viclab (detector format {found}, this "
                          f"version reads {FORMAT}); fit it again with this version")
    cfg = detect_config_from_dict(saved, str(folder / CONFIG))
    cls = DETECTORS[cfg.detector]
    state, meta = _load_tensors(folder / MODEL)
    reference, ref_meta = _load_tensors(folder / REFERENCE)
    if meta.get("format") != FORMAT or ref_meta.get("format") != FORMAT or meta.get("network") != cls.network_kind:
        raise ViclabError(f"{folder}: its weights files do not match its detector.json (format or network); fit it "
                          "again")
    network, net_cfg = build_network(cls.network_kind, json.loads(meta["config"]), str(folder / MODEL))
    load_state(network, state, folder / MODEL, "the detector folder is damaged; fit it again")
    augment = net_cfg.augment if net_cfg is not None else cfg.recipe.augment
    return cls(cfg, network, augment, rt or scoring_runtime(cfg), reference), summary
