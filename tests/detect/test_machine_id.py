"""The machine-ID detector (issue 27): MIMII's layout written here, each machine ID a hum of its own pitch, the
anomalies off-pitch; the clip score against its definition (windows cut by numpy, log-softmax by hand), reload,
and the layouts it cannot learn from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from tests.detect.test_sound_detect import RATE, SOUND
from viclab.cli import main
from viclab.config import resolve
from viclab.core.context import QUIET
from viclab.detect import fit_detector, load_detector, load_test

sf = pytest.importorskip("soundfile")
PITCH = {"id_00": 110.0, "id_02": 220.0, "id_04": 440.0}
TINY = [*SOUND, "machine_id.window=16", "machine_id.hop=8", "machine_id.epochs=40", "machine_id.batch_size=16",
        "machine_id.lr=3e-3", "detect.precision=fp32"]


def machine(rng: np.random.Generator, f0: float) -> np.ndarray:
    t = np.arange(int(0.5 * RATE)) / RATE
    f = f0 * rng.uniform(0.98, 1.02)
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(2 * np.pi * 3 * f * t)
            + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _layout(root: Path, ids: dict[str, float], normal: int = 16, abnormal: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for mid, f0 in ids.items():
        for cond, n in (("normal", normal), ("abnormal", abnormal)):
            folder = root / "mimii" / "-6_dB_fan" / "fan" / mid / cond
            folder.mkdir(parents=True)
            for i in range(n):  # an anomaly runs off-pitch, between the IDs' pitches
                sf.write(str(folder / f"{i:08d}.wav"), machine(rng, f0 * (1.5 if cond == "abnormal" else 1)), RATE)
    return root


@pytest.fixture(scope="module")
def mimii(tmp_path_factory) -> Path:
    return _layout(tmp_path_factory.mktemp("machines"), PITCH)


def _cfg(data: Path, *extra: str):
    return resolve("detect", "sound", overrides=[f"data.data_dir={data}", "data.dataset=mimii",
                                                 "data.normal_classes=normal", "detect.detector=machine_id",
                                                 "sound.test_share=0.25", *TINY, *extra])


def test_machine_id_detector_finds_off_pitch_machines_and_reloads(mimii, tmp_path):
    cfg = _cfg(mimii)
    torch.manual_seed(0)
    fit_detector(cfg, tmp_path / "id", ctx=QUIET)
    det, _ = load_detector(tmp_path / "id")
    assert det.network.classes == ("id_00", "id_02", "id_04")
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    s = det.score_data(test.data)["score"]
    assert roc_auc_score(test.labels, s) > 0.9
    again, _ = load_detector(tmp_path / "id")
    np.testing.assert_array_equal(s, again.score_data(test.data)["score"])
    # The score by its definition: numpy windows every hop frames, -log softmax of the own ID by hand, the mean.
    x, ids = test.data.images[:3].numpy(), test.data.attrs["machine_id"][:3]
    starts = range(0, x.shape[-1] - 16 + 1, 8)
    for i in range(3):
        windows = torch.from_numpy(np.stack([x[i, :, :, a:a + 16] for a in starts]))
        with torch.no_grad():
            logits = det.network(windows).double().numpy()
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        assert s[i] == pytest.approx(-logp[:, det.network.classes.index(ids[i])].mean(), rel=1e-5)


def test_machine_id_refuses_what_it_cannot_learn(tmp_path, capsys):
    one = _layout(tmp_path / "one", {"id_00": 110.0}, normal=6, abnormal=2)
    argv = ["detect", "fit", "--detector", "machine_id", "--preset", "sound", "--out", str(tmp_path / "d"),
            "--no-progress", "data.dataset=mimii", "data.normal_classes=normal", "sound.test_share=0.25", *TINY]
    assert main([*argv, f"data.data_dir={one}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("viclab: error: the normal clips hold one machine ID only (id_00)")
    folder = tmp_path / "plain"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        sf.write(str(folder / f"{i}.wav"), machine(rng, 110.0), RATE)
    assert main(["detect", "fit", "--detector", "machine_id", "--normal", str(folder), "--out", str(tmp_path / "e"),
                 "--no-progress", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("viclab: error: the machine_id detector learns to name the machine ID")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()  # nothing written before the refusal
