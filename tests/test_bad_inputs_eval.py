"""Bad inputs of evaluation and training (issue 24), through the real ``viclab`` command, with the
checks of :mod:`tests.test_bad_inputs`: exit code 2, one ``viclab: error:`` line naming the problem
and the fix, no traceback, never torch's ``weights_only`` advice or a terminal colour code, nothing
left in the working folder, no input changed, no temporary file."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.test_bad_inputs import _digest, case_env, check_one_clear_line, run_cases

# id -> (argv, fragment naming the problem, fragment naming the fix); {run} a trained tiny run, {data}
# its data, {w} the world of broken inputs below, {cwd} the case's own empty working folder.
CASES: dict[str, tuple[list[str], str, str]] = {
    "probe-one-class": (["probe", "{run}", "--data-dir", "{data}", "--dataset", "{w}/one-class"],
                        "has 1 class (red) in its train images", "give a dataset with at least two classes"),
    "retrieve-one-class": (["retrieve", "{run}", "--data-dir", "{data}", "--dataset", "{w}/one-class"],
                           "would score 100% whatever the encoder", "at least two classes"),
    "pretrained-zero-bytes": (["probe", "pretrained:resnet50:{w}/zero.pth", "--dataset", "{w}/one-class"],
                              "zero.pth: it is empty", "download it again"),
    "pretrained-python-object": (["probe", "pretrained:resnet50:{w}/object.pth", "--dataset", "{w}/one-class"],
                                 "holds a Python object (argparse.Namespace)", "download it again"),
    "pretrained-damaged": (["probe", "pretrained:resnet50:{w}/damaged.pth", "--dataset", "{w}/one-class"],
                           "it is damaged or not a weights file", "download it again"),
    "vit-view-size": (["train", "--preset", "vit", "augment.size=30", "train.batch_size=20", "--name", "X",
                       "--data-dir", "{data}", "--out", "{cwd}/runs"],
                      "augment.size=30 is not a multiple of the ViT patch size 4", "use augment.size=28"),
}


def _make_world(w: Path) -> None:
    (w / "zero.pth").write_bytes(b"")
    torch.save({"weight": torch.zeros(2), "args": argparse.Namespace(lr=1)}, w / "object.pth")
    torch.save({"weight": torch.zeros(64)}, w / "damaged.pth")
    raw = bytearray((w / "damaged.pth").read_bytes())
    raw[:64] = bytes(64)  # the zip's local header
    (w / "damaged.pth").write_bytes(bytes(raw))
    for split, n in (("train", 24), ("test", 4)):  # 24: more than the 20 neighbours of the kNN
        (w / "one-class" / split / "red").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (200, i, 0)).save(w / "one-class" / split / "red" / f"{i}.png")


@pytest.fixture(scope="module")
def outcomes(tiny_run, tmp_path_factory):
    """Every case run once, two at a time; ``{id: (returncode, stderr, cwd)}`` and the digests."""
    run, data = tiny_run
    w = tmp_path_factory.mktemp("world")
    _make_world(w)
    before = {"world": _digest(w), "run": _digest(run), "data": _digest(data)}
    cache = tmp_path_factory.mktemp("cache")
    env = case_env(cache, w)
    places = {"data": data, "run": run, "w": w}

    results = run_cases(CASES, places, tmp_path_factory, env)
    after = {"world": _digest(w), "run": _digest(run), "data": _digest(data)}
    temp = [p for root in (w, run, data, cache) for p in root.rglob("*.tmp")]
    return results, places, before, after, temp


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_is_one_clear_line(outcomes, case):
    results, places, *_ = outcomes
    _, problem, fix = CASES[case]
    check_one_clear_line(results[case], problem.format(**places), fix.format(**places))


def test_nothing_half_written_and_no_input_changed(outcomes):
    _, places, before, after, temp = outcomes
    assert temp == []
    assert after == before  # the run folder too: the refused evaluations wrote no eval folder in it


def test_train_help_lists_every_preset():
    from viclab.config import PRESETS

    r = subprocess.run([sys.executable, "-m", "viclab", "train", "--help"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0
    line = next(line for line in r.stdout.splitlines() if "--preset" in line and "recipe" in line)
    assert len(PRESETS) == 7 and all(name in line for name in PRESETS), line
