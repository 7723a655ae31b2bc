"""Every bad input answered, §4 detector folders: mistakes with a fitted detector, through the real command.

The same contract as ``tests/test_bad_inputs.py``: exit code 2, exactly one ``viclab: error:`` line naming
the problem and the fix, no traceback, nothing left in the working folder, no input file changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.test_bad_inputs import _digest, case_env, check_one_clear_line, run_cases

# id -> (argv, fragment naming the problem, fragment naming the fix); {w}: the world folder, {cwd}: the case's own.
CASES: dict[str, tuple[list[str], str, str]] = {
    "nan-statistics": (["detect", "score", "{w}/nan-detector", "--out", "{cwd}/s"],
                       "holds non-finite statistics (NaN or inf in reference.safetensors", "fit it again"),
    "config-bad-value": (["detect", "score", "{w}/bad-value", "--out", "{cwd}/s"],
                         "{w}/bad-value/config.json: detect.k='many' is not a valid int", "edit the file back"),
    "config-unknown-detector": (["detect", "score", "{w}/bad-detector", "--out", "{cwd}/s"],
                                "{w}/bad-detector/config.json: detect.detector='knnn' is unknown",
                                "or fit the detector again"),
    "summary-list": (["detect", "score", "{w}/summary-list", "--out", "{cwd}/s"],
                     "{w}/summary-list/detector.json holds a list, not an object", "damaged, fit it again"),
    "normal-folder-gone": (["detect", "score", "{w}/orphan-detector", "--out", "{cwd}/s"],
                           "the normal folder {w}/gone that {w}/orphan-detector was fitted on no longer exists",
                           "put it back there, or fit the detector again"),
    "holdout-nan": (["detect", "score", "{w}/nan-holdout", "--fpr", "0.1", "--out", "{cwd}/s"],
                    "holds non-finite scores", "fit it again"),
}


def _make_world(w: Path) -> None:
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from viclab.config import resolve
    from viclab.core.context import QUIET
    from viclab.detect import fit_detector

    rng = np.random.default_rng(0)
    for folder in ("plain", "gone", "odd"):
        (w / folder).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(w / folder / f"{i}.png")
    fit_detector(resolve("detect", overrides=[f"data.normal={w / 'plain'}", f"data.abnormal={w / 'odd'}",
                                              "data.size=8", "detect.encoder=random:small_cnn", "data.holdout=0.2"]),
                 w / "knn-detector", ctx=QUIET)
    fit_detector(resolve("detect", overrides=[f"data.normal={w / 'gone'}", "detect.encoder=random:small_cnn",
                                              "data.size=8"]),
                 w / "orphan-detector", ctx=QUIET)
    shutil.rmtree(w / "gone")
    for name in ("nan-detector", "bad-value", "bad-detector", "summary-list", "nan-holdout"):
        shutil.copytree(w / "knn-detector", w / name)
    ref = load_file(str(w / "nan-detector" / "reference.safetensors"))
    first = next(iter(ref))
    ref[first] = ref[first] * float("nan")
    save_file(ref, str(w / "nan-detector" / "reference.safetensors"), metadata={"format": "2", "detector": "knn"})
    for name, old, new in (("bad-value", '"k": 2,', '"k": "many",'), ("bad-detector", '"detector": "knn"',
                                                                       '"detector": "knnn"')):
        text = (w / name / "config.json").read_text()
        assert old in text
        (w / name / "config.json").write_text(text.replace(old, new, 1))
    (w / "summary-list" / "detector.json").write_text("[]\n")
    np.save(w / "nan-holdout" / "holdout_scores.npy", np.array([0.1, np.nan]))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    w = tmp_path_factory.mktemp("world")
    _make_world(w)
    before = _digest(w)
    env = case_env(tmp_path_factory.mktemp("cache"), w)
    results = run_cases(CASES, {"w": w}, tmp_path_factory, env)
    return results, w, before


@pytest.mark.parametrize("case", list(CASES))
def test_detector_mistake_is_one_clear_line(outcomes, case):
    results, w, _ = outcomes
    _, problem, fix = CASES[case]
    check_one_clear_line(results[case], problem.format(w=w), fix.format(w=w))


def test_no_detector_folder_changed(outcomes):
    _, w, before = outcomes
    assert _digest(w) == before

