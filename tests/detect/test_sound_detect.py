"""Detectors on sound: folders of WAV files written here (a hum is normal, a hum with a whistle is
not), MIMII's layout as a registered dataset, every detector fitted, saved, reloaded and scored, the
DCASE baseline's clip score against its definition, and resynthesis of a reconstruction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from viclab.cli import main
from viclab.config import resolve
from viclab.core.context import QUIET
from viclab.detect import fit_detector, load_detector, load_normal, load_test, run_monitor, run_score
from viclab.detect.resynth import resynthesise
from viclab.models import stack_frames

sf = pytest.importorskip("soundfile")
RATE = 8_000
SOUND = ["sound.rate=8000", "sound.clip_seconds=0.5", "sound.n_fft=256", "sound.hop_length=64", "sound.n_mels=32"]
TINY = [*SOUND, "model.projector=32-32", "train.batch_size=8", "train.epochs=2", "detect.views=3",
        "detect.precision=fp32", "autoencoder.widths=8,16", "autoencoder.latent=8", "autoencoder.epochs=3",
        "autoencoder.batch_size=8", "dcase.hidden=16", "dcase.epochs=3", "dcase.batch_size=64"]


def hum(rng: np.random.Generator, seconds: float, whistle: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(110, 130)
    wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3 * f0 * t) + 0.02 * rng.standard_normal(len(t))
    if whistle:
        wave += 0.3 * np.sin(2 * np.pi * rng.uniform(2000, 3000) * t)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> Path:
    """normal/ (40 hums, 0.5-0.8 s, mono and stereo, 8 and 16 kHz) and abnormal/ (12 hums with a whistle)."""
    root = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    for name, n, odd in (("normal", 40, False), ("abnormal", 12, True)):
        (root / name).mkdir()
        for i in range(n):
            wave = hum(rng, rng.uniform(0.5, 0.8), odd)  # cropped to 0.5 s
            if i % 5 == 1:
                sf.write(str(root / name / f"{i}.wav"), np.stack([wave, wave], 1), RATE, subtype="PCM_24")
            elif i % 5 == 2:
                from scipy.signal import resample_poly

                sf.write(str(root / name / f"{i}.flac"), resample_poly(wave, 2, 1), 2 * RATE)
            else:
                sf.write(str(root / name / f"{i}.wav"), wave, RATE, subtype="PCM_16")
    return root


def _cfg(sounds: Path, *extra: str):
    return resolve("detect", "sound", overrides=[f"data.normal={sounds / 'normal'}",
                                                 f"data.abnormal={sounds / 'abnormal'}", *TINY, *extra])


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def test_folder_sound_data_are_spectrograms_split_by_file(sounds):
    cfg = _cfg(sounds)
    fit, holdout = load_normal(cfg.data, cfg.recipe.sound)
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    assert fit.images.dtype == torch.float32 and fit.images.shape[1:] == (1, 32, 63)
    assert len(fit) + len(holdout) + int((test.labels == 0).sum()) == 40 and int((test.labels == 1).sum()) == 12


@pytest.mark.parametrize("detector, encoder, floor", [
    ("knn", "random:spec_cnn", 0.8), ("mahalanobis", "random:spec_cnn", 0.8), ("vicreg_terms", None, None),
    ("autoencoder", None, 0.8), ("dcase_ae", None, 0.8)])
def test_every_detector_fits_reloads_identically_and_finds_the_whistle(sounds, tmp_path, detector, encoder, floor):
    extra = [f"detect.detector={detector}"] + ([f"detect.encoder={encoder}"] if encoder else [])
    cfg = _cfg(sounds, *extra, "detect.shrinkage=0.2", "dcase.epochs=30", "autoencoder.epochs=30")
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    a, _ = load_detector(tmp_path / "d")
    b, _ = load_detector(tmp_path / "d")
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    sa, sb = a.score(test.data.images), b.score(test.data.images)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert np.isfinite(sa["score"]).all()
    if floor is not None:  # a 2-3 kHz whistle over a 120 Hz hum: every detector but the barely trained VICReg sees it
        assert _auroc(test.labels, sa["score"]) >= floor


def test_dcase_clip_score_is_the_mean_window_error(sounds, tmp_path):
    cfg = _cfg(sounds, "detect.detector=dcase_ae")
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    det, _ = load_detector(tmp_path / "d")
    x = load_test(cfg.data, sound=cfg.recipe.sound).data.images[:4]
    scores = det.score(x)["score"]
    for i in range(len(x)):
        windows = stack_frames(x[i:i + 1], 5)[0]  # (W, 5 * 32)
        with torch.no_grad():
            errors = ((det.network(windows) - windows) ** 2).mean(1)
        assert scores[i] == pytest.approx(float(errors.mean()), rel=1e-5)


def test_registered_mimii_layout(tmp_path):
    base = tmp_path / "data" / "mimii" / "-6_dB_fan" / "fan"
    rng = np.random.default_rng(1)
    for mid in ("id_00", "id_02"):
        for cond, n in (("normal", 12), ("abnormal", 4)):
            (base / mid / cond).mkdir(parents=True)
            for i in range(n):
                sf.write(str(base / mid / cond / f"{i:08d}.wav"), hum(rng, 0.5, cond == "abnormal"), RATE)
    cfg = resolve("detect", "sound", overrides=[f"data.data_dir={tmp_path / 'data'}", "data.dataset=mimii",
                                                "data.normal_classes=normal", "detect.encoder=random:spec_cnn",
                                                "sound.test_share=0.25", *TINY])
    fit_detector(cfg, tmp_path / "knn", ctx=QUIET)
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    assert int((test.labels == 0).sum()) == 2 * 3 and int((test.labels == 1).sum()) == 2 * 4
    assert all(o.startswith("mimii:-6_dB_fan/fan/id_0") for o in test.origin)
    out = run_score([tmp_path / "knn"], tmp_path / "score", ctx=QUIET)
    assert out["test"] == {"normal": 6, "anomalous": 8, "abnormal": None, "anomalies": None}
    rows = (tmp_path / "score" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 14 and "fan/id_02/abnormal/00000003.wav" in "".join(rows)


def test_monitor_and_score_on_sound(sounds, tmp_path):
    cfg = _cfg(sounds, "detect.detector=vicreg_terms")
    fit_detector(cfg, tmp_path / "vt", ctx=QUIET)
    mon = run_monitor(tmp_path / "vt", tmp_path / "mon", stream="normal:2,anomalous:1", batch_size=4,
                      ctx=QUIET)
    assert all(np.isfinite(v).all() for v in mon["terms"].values())
    run_score([tmp_path / "vt"], tmp_path / "score", ctx=QUIET)
    assert (tmp_path / "score" / "top_anomalies.png").stat().st_size > 1000


def test_cli_fit_picks_the_sound_recipe_and_resynthesises(sounds, tmp_path, capsys):
    argv = ["detect", "fit", "--detector", "autoencoder", "--normal", str(sounds / "normal"), "--abnormal",
            str(sounds / "abnormal"), "--out", str(tmp_path / "ae"), "--no-progress", *TINY]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "ae" / "config.json").read_text())
    assert saved["recipe"]["model"]["backbone"] == "spec_cnn" and saved["recipe"]["sound"]["rate"] == RATE
    clip = sounds / "abnormal" / "0.wav"
    result = resynthesise(clip, tmp_path / "rs", detector=tmp_path / "ae", ctx=QUIET)
    assert {p.name for p in (tmp_path / "rs").iterdir()} == {"original.wav", "resynth.wav", "spectrograms.png",
                                                            "resynth.json"}
    y, rate = sf.read(str(tmp_path / "rs" / "resynth.wav"))
    assert rate == RATE and len(y) == RATE // 2 and np.abs(y).max() <= 1
    assert result["vs_given_magnitude"]["spectral_convergence"] < result["vs_original"]["spectral_convergence"] + 1
    assert main(["sound", "resynth", str(clip), "--out", str(tmp_path / "rs2"), "--preset", "fsdd"]) == 0
    plain = json.loads((tmp_path / "rs2" / "resynth.json").read_text())
    assert plain["vs_original"]["spectral_convergence"] < 0.5  # the spectrogram itself comes back close
