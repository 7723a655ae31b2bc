"""Bad inputs of ``viclab sound resynth`` and of torchrun's device, through the real command.

The same checks as tests/test_bad_inputs.py (its ``test_mistake_is_one_clear_line``): each case
runs ``python -m viclab ...`` in a fresh empty working folder and must end with exit code 2 and
exactly one ``viclab: error:`` line naming the problem and the fix; no traceback; the working
folder stays empty (no output folder, nothing half-written); the inputs are unchanged and no
temporary file remains.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.test_bad_inputs import _digest, case_env, check_one_clear_line, run_cases

# id -> (argv, fragment naming the problem, fragment naming the fix, extra environment). {w}: the
# world folder of inputs, {cwd}: the case's own (empty) working folder.
CASES: dict[str, tuple[list[str], str, str, dict[str, str]]] = {
    "resynth-one-sample": (["sound", "resynth", "{w}/one-sample.wav", "--out", "{cwd}/r"],
                           "{w}/one-sample.wav holds 1 sample(s) at 16000 Hz, fewer than one analysis window",
                           "at least sound.n_fft = 1024 samples (0.064 s)", {}),
    "resynth-too-long": (["sound", "resynth", "{w}/long.wav", "--out", "{cwd}/r"],
                         "{w}/long.wav lasts 61.0 s, longer than --max-seconds 60",
                         "cut the clip, or raise --max-seconds", {}),
    "resynth-longer-than-asked": (["sound", "resynth", "{w}/tone.wav", "--max-seconds", "0.5", "--out", "{cwd}/r"],
                                  "lasts 1.0 s, longer than --max-seconds 0.5", "raise --max-seconds", {}),
    "resynth-max-seconds": (["sound", "resynth", "{w}/tone.wav", "--max-seconds", "0", "--out", "{cwd}/r"],
                            "--max-seconds 0.0 must be > 0", "the longest clip to accept", {}),
    "resynth-silent": (["sound", "resynth", "{w}/silent.wav", "--out", "{cwd}/r"],
                       "{w}/silent.wav is silent (every sample is 0)", "give a clip with sound in it", {}),
    "resynth-nan": (["sound", "resynth", "{w}/nan.wav", "--out", "{cwd}/r"],
                    "sound file {w}/nan.wav holds 1 non-finite sample(s)", "remove or repair", {}),
    "torchrun-numbered-gpu": (["train", "train.device=cuda:1", "--out", "{cwd}/runs"],
                              "device 'cuda:1' under torchrun puts all 2 processes on one GPU",
                              "use train.device=cuda (or auto)", {"WORLD_SIZE": "2", "LOCAL_RANK": "0"}),
}


def _make_world(w) -> None:
    tone = (0.3 * np.sin(np.arange(16_000) * 0.2)).astype(np.float32)
    sf.write(str(w / "tone.wav"), tone, 16_000, subtype="PCM_16")
    sf.write(str(w / "one-sample.wav"), tone[:1], 16_000, subtype="PCM_16")
    sf.write(str(w / "long.wav"), np.tile(tone[:8000:2], 122), 8_000, subtype="PCM_16")  # 61 s at 8 kHz
    sf.write(str(w / "silent.wav"), np.zeros(8000, dtype=np.float32), 16_000, subtype="PCM_16")
    nan = tone.copy()
    nan[100] = np.nan
    sf.write(str(w / "nan.wav"), nan, 16_000, subtype="FLOAT")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case run once (two processes at a time); ``{id: (returncode, stderr, cwd)}`` and the world."""
    w = tmp_path_factory.mktemp("world")
    _make_world(w)
    before = _digest(w)
    env = case_env(tmp_path_factory.mktemp("cache"), w)

    results = run_cases(CASES, {"w": w}, tmp_path_factory, env)
    return results, w, before


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_is_one_clear_line(outcomes, case):
    results, w, _ = outcomes
    _, problem, fix, _ = CASES[case]
    check_one_clear_line(results[case], problem.format(w=w), fix.format(w=w))


def test_nothing_half_written_and_no_input_changed(outcomes):
    _, w, before = outcomes
    assert _digest(w) == before
    assert list(w.rglob("*.tmp")) == []
