"""``detect score`` says which file each score belongs to, scores each detector on its own features,
reports per machine ID and with intervals, and does not depend on the working directory of the fit.

References: sklearn's ``roc_auc_score`` on the rows of ``scores.csv``, a brute-force bootstrap, each
detector scored alone, and the files the tests wrote."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.detect.test_sound_detect import RATE, TINY, hum, sounds  # noqa: F401 (the module fixture)
from viclab.config import resolve
from viclab.core.context import QUIET, Context
from viclab.core.metrics import auroc_interval
from viclab.detect import fit_detector, run_score

sf = pytest.importorskip("soundfile")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "scores.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """good/ (20 noise images) and bad/ (6 flat grey ones, one name with a comma)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for name, n in (("good", 20), ("bad", 6)):
        (root / name).mkdir()
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) if name == "good" else \
                np.full((8, 8, 3), 40 * i, np.uint8)
            Image.fromarray(pixels).save(root / name / (f"{i}.png" if i != 3 else "a,b.png"))
    return root


def test_scores_csv_names_the_file_of_every_row(pictures, tmp_path):
    cfg = resolve("detect", overrides=[f"data.normal={pictures / 'good'}", f"data.abnormal={pictures / 'bad'}",
                                       "data.size=8", "detect.encoder=random:small_cnn"])
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    run_score([tmp_path / "d"], tmp_path / "s", ctx=QUIET)
    rows = _rows(tmp_path / "s")
    files = [r["file"] for r in rows]
    assert len(set(files)) == len(files)
    bad = sorted(r["file"] for r in rows if r["label"] == "1")
    assert bad == sorted(str(p.resolve()) for p in (pictures / "bad").iterdir())
    good = {str(p.resolve()) for p in (pictures / "good").iterdir()}
    assert {r["file"] for r in rows if r["label"] == "0"} <= good


def test_a_detector_fitted_with_relative_paths_scores_from_anywhere(pictures, tmp_path, monkeypatch):
    monkeypatch.chdir(pictures)
    cfg = resolve("detect", overrides=["data.normal=good", "data.abnormal=bad", "data.size=8",
                                       "detect.encoder=random:small_cnn"])
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    saved = json.loads((tmp_path / "d" / "config.json").read_text())["data"]
    assert saved["normal"] == str(pictures / "good") and saved["abnormal"] == str(pictures / "bad")
    monkeypatch.chdir(tmp_path)
    out = run_score([tmp_path / "d"], tmp_path / "s", ctx=QUIET)
    assert out["test"]["anomalous"] == 6


def test_each_sound_detector_is_scored_on_its_own_spectrograms(sounds, tmp_path):  # noqa: F811
    """A 32-band and a 24-band detector scored together get exactly the scores each gets alone."""
    base = [f"data.normal={sounds / 'normal'}", f"data.abnormal={sounds / 'abnormal'}", *TINY,
            "detect.encoder=random:spec_cnn"]
    for name, mels in (("m32", 32), ("m24", 24)):
        fit_detector(resolve("detect", "sound", overrides=[*base, f"sound.n_mels={mels}"]), tmp_path / name, ctx=QUIET)
    together = run_score([tmp_path / "m32", tmp_path / "m24"], tmp_path / "both", ctx=QUIET)
    for name in ("m32", "m24"):
        alone = run_score([tmp_path / name], tmp_path / f"alone-{name}", ctx=QUIET)
        assert together["detectors"][name]["auroc"] == alone["detectors"][name]["auroc"]
        assert [r[f"{name}:score"] for r in _rows(tmp_path / "both")] == \
            [r[f"{name}:score"] for r in _rows(tmp_path / f"alone-{name}")]


def _mimii(root: Path) -> Path:
    """MIMII's layout, fan, two IDs; the abnormal clips of id_02 barely differ (a low AUROC there)."""
    rng = np.random.default_rng(3)
    for mid, loud in (("id_00", True), ("id_02", False)):
        for cond, n in (("normal", 12), ("abnormal", 4)):
            folder = root / "mimii" / "-6_dB_fan" / "fan" / mid / cond
            folder.mkdir(parents=True)
            for i in range(n):
                wave = hum(rng, 0.5, cond == "abnormal" and loud)
                sf.write(str(folder / f"{i:08d}.wav"), wave, RATE)
    return root


def test_score_reports_every_machine_id_like_sklearn(tmp_path):
    data = _mimii(tmp_path / "data")
    cfg = resolve("detect", "sound", overrides=[f"data.data_dir={data}", "data.dataset=mimii",
                                                "data.normal_classes=normal", "detect.encoder=random:spec_cnn",
                                                "sound.test_share=0.25", *TINY])
    fit_detector(cfg, tmp_path / "knn", ctx=QUIET)
    lines: list[str] = []
    out = run_score([tmp_path / "knn"], tmp_path / "s", ctx=Context(progress=False, echo=lines.append))
    rows = _rows(tmp_path / "s")
    per = out["detectors"]["knn"]["per_group"]
    assert set(per["groups"]) == {r["group"] for r in rows} and len(per["groups"]) == 2
    for group, m in per["groups"].items():
        mine = [r for r in rows if r["group"] == group]
        want = roc_auc_score([int(r["label"]) for r in mine], [float(r["knn:score"]) for r in mine])
        assert m["auroc"] == pytest.approx(want, abs=1e-6)
        assert m["auroc_interval"][0] <= m["auroc"] <= m["auroc_interval"][1]
    assert per["mean_auroc"] == pytest.approx(np.mean([m["auroc"] for m in per["groups"].values()]))
    assert any("per group" in line and "id_00" in line for line in lines)
    assert "[95%" in lines[0]


def test_bootstrap_interval_for_large_sets_matches_brute_force(monkeypatch):
    """The rank-sum bootstrap (large test sets) against sklearn's AUROC of each resample."""
    import viclab.core.metrics as metrics

    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(40, int), np.ones(30, int)]
    scores = np.round(rng.normal(size=70) + 0.8 * labels, 1)  # rounded: ties count half
    monkeypatch.setattr(metrics, "PAIRWISE_LIMIT", 0)
    low, high = auroc_interval(labels, scores, reps=300, seed=4)
    draw = np.random.default_rng(4)
    pos, neg = scores[labels == 1], scores[labels == 0]
    aucs = []
    for _ in range(300):
        p, n = pos[draw.integers(0, 30, 30)], neg[draw.integers(0, 40, 40)]
        aucs.append(roc_auc_score(np.r_[np.ones(30), np.zeros(40)], np.r_[p, n]))
    assert (low, high) == pytest.approx((np.quantile(aucs, 0.025), np.quantile(aucs, 0.975)), abs=1e-12)


def test_a_tiny_held_out_set_is_called_out(pictures, tmp_path):
    cfg = resolve("detect", overrides=[f"data.normal={pictures / 'good'}", "data.size=8",
                                       "detect.encoder=random:small_cnn", f"data.abnormal={pictures / 'bad'}"])
    with pytest.warns(UserWarning, match=r"only 2 held-out normal images calibrate the threshold"):
        fit_detector(cfg, tmp_path / "d", ctx=QUIET)
