"""Bad data through the real ``viclab`` command (issue 24): non-finite samples, a class both normal and
anomalous, files no layout can place, a mistyped dataset name, a mistyped folder for an 18.8 GB set.

The checks of :mod:`tests.test_bad_inputs`: each case runs ``python -m viclab ...`` in a fresh process in
its own empty working folder and must exit 2 with exactly one ``viclab: error:`` line naming the problem
and the fix, no traceback, nothing written (the working folder stays empty, no temporary file anywhere,
the inputs unchanged).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests import test_bad_inputs as harness
from tests.conftest import write_fake_cifar

# id -> (argv, fragment naming the problem, fragment naming the fix); {w} the world folder, {cwd} the case's own.
FIT = ["detect", "fit", "--encoder", "random:spec_cnn", "--out", "{cwd}/d"]
CASES: dict[str, tuple[list[str], str, str]] = {
    "nan-normal-knn": ([*FIT, "--normal", "{w}/nan-sounds"], "sound file {w}/nan-sounds/nan.wav holds 4 non-finite",
                       "remove or repair it"),
    "nan-normal-mahalanobis": ([*FIT, "--normal", "{w}/nan-sounds", "--detector", "mahalanobis"],
                               "sound file {w}/nan-sounds/nan.wav holds", "remove or repair it"),
    "inf-abnormal": ([*FIT, "--normal", "{w}/sounds", "--abnormal", "{w}/inf-sounds"],
                     "sound file {w}/inf-sounds/inf.wav holds 1 non-finite", "remove or repair it"),
    "nan-resynth": (["sound", "resynth", "{w}/nan-sounds/nan.wav", "--out", "{cwd}/r"],
                    "sound file {w}/nan-sounds/nan.wav holds", "remove or repair it"),
    "class-normal-and-anomalous": (["detect", "fit", "--data-dir", "{w}", "--normal-classes", "cat",
                                    "--anomaly-classes", "cat,dog", "--encoder", "random:small_cnn", "--out",
                                    "{cwd}/d"], "class 'cat' of cifar10 is both a normal and an anomaly class",
                                   "drop it from --normal-classes or from --anomaly-classes"),
    "dcase-flat-folder": ([*FIT, "--dataset", "dcase", "--data-dir", "{w}/flat-dcase"],
                          "its 6 sound file(s) do not match the layout <machine>/{{train,test}}/{{normal,anomaly}}",
                          "move them into that layout"),
    "dataset-typo-detect": ([*FIT, "--dataset", "mimi"], "unknown dataset 'mimi'",
                            "sounds, fsdd, mimii, dcase (sound)"),
    "dataset-typo-probe": (["probe", "random:small_cnn", "--dataset", "mimi", "--out", "{cwd}/p"],
                           "unknown dataset 'mimi'", "or give an image folder or a sound folder"),
    "mimii-large-download": ([*FIT, "--dataset", "mimii", "--data-dir", "{w}/dta"],
                             "the mimii set is not in {w}/dta (no folder {w}/dta/mimii), and downloading it means "
                             "18.8 GB", "set VICLAB_DOWNLOAD=1 to download it, or give the folder that holds it"),
}


def _make_world(w) -> None:
    import soundfile as sf

    tone = (0.3 * np.sin(np.arange(8000) * 0.2)).astype(np.float32)
    for folder in ("sounds", "nan-sounds", "inf-sounds"):
        (w / folder).mkdir()
        for i in range(3):
            sf.write(str(w / folder / f"{'abc'[i]}.wav"), tone * (i + 1) / 3, 16_000, subtype="FLOAT")
    nan, inf = tone.copy(), tone.copy()
    nan[10:14] = np.nan
    inf[20] = -np.inf
    sf.write(str(w / "nan-sounds" / "nan.wav"), nan, 16_000, subtype="FLOAT")
    sf.write(str(w / "inf-sounds" / "inf.wav"), inf, 16_000, subtype="FLOAT")
    (w / "flat-dcase").mkdir()
    for i in range(6):
        sf.write(str(w / "flat-dcase" / f"fan_normal_id_00_{i:08d}.wav"), tone, 16_000, subtype="PCM_16")
    write_fake_cifar(w)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once (two processes at a time); ``{id: (returncode, stderr, cwd)}``."""
    w = tmp_path_factory.mktemp("world")
    _make_world(w)
    before = harness._digest(w)
    cache = tmp_path_factory.mktemp("cache")
    env = {k: v for k, v in harness.case_env(cache, w).items() if k != "VICLAB_DOWNLOAD"}  # no opt-in to large ones

    results = harness.run_cases(CASES, {"w": w}, tmp_path_factory, env)
    temp = [p for root in (w, cache) for p in root.rglob("*.tmp")]
    return results, w, before, harness._digest(w), temp


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_one_clear_line(outcomes, case):
    results, w, *_ = outcomes
    _, problem, fix = CASES[case]
    harness.check_one_clear_line(results[case], problem.format(w=w), fix.format(w=w))


def test_nothing_half_written_and_no_input_changed(outcomes):
    _, w, before, after, temp = outcomes
    assert temp == []
    assert after == before  # no data folder made for the refused download either
