"""Data that would silently go wrong: non-finite samples, files a layout cannot place, a mistyped data
folder that would start a many-gigabyte download, and a mistyped dataset name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from viclab.config import SoundConfig
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.data import load_images, load_sound
from viclab.data.sounds import decode

sf = pytest.importorskip("soundfile")


def _wav(path: Path, wave: np.ndarray, rate: int = 16_000, subtype: str = "FLOAT") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), rate, subtype=subtype)
    return path


def _tone(seconds: float = 0.2, rate: int = 16_000) -> np.ndarray:
    return 0.3 * np.sin(np.arange(int(seconds * rate)) * 0.1)


# --- non-finite samples -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_file_with_non_finite_samples_is_refused_by_name(tmp_path, bad):
    wave = _tone()
    wave[100:103] = bad
    path = _wav(tmp_path / "normal" / "bad.wav", wave)
    with pytest.raises(ViclabError, match="non-finite") as e:
        decode(path, 16_000)
    assert str(path) in str(e.value) and "remove or repair it" in str(e.value)
    _wav(tmp_path / "normal" / "good.wav", _tone())
    with pytest.raises(ViclabError, match=f"sound file {path} holds 3 non-finite sample"):
        load_sound("sounds", "test", tmp_path / "normal", SoundConfig(clip_seconds=0.2), use_cache=False)


def test_the_clip_cache_never_serves_non_finite_clips(tmp_path, monkeypatch):
    """A cache entry with NaN clips (a damaged file, or one written before decoding refused them) is decoded again."""
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "sounds"
    _wav(folder / "a.wav", _tone())
    cfg = SoundConfig(clip_seconds=0.2)
    first = load_sound("sounds", "test", folder, cfg)
    (entry,) = (tmp_path / "cache" / "sound").glob("*.npy")
    np.save(entry, np.full(first.clips.shape, np.nan, dtype=np.float32))
    again = load_sound("sounds", "test", folder, cfg)
    expect = decode(folder / "a.wav", 16_000)[:cfg.clip_samples]
    np.testing.assert_array_equal(again.clips[0].numpy(), expect)


# --- files a layout cannot place --------------------------------------------------------------


def _dcase(root: Path) -> Path:
    for i in range(3):
        _wav(root / "fan" / "train" / f"normal_id_04_{i:08d}.wav", _tone())
        _wav(root / "fan" / "test" / f"anomaly_id_04_{i:08d}.wav", _tone())
        _wav(root / "fan" / "test" / f"normal_id_04_{i:08d}.wav", _tone())
    for name in ("anomaly_id_04.wav", "Anomaly_id_04_x.wav", "abnormal_id_04_0001.wav"):
        _wav(root / "fan" / "test" / name, _tone())
    return root


def test_dcase_files_with_other_names_are_named_not_dropped(tmp_path):
    root = _dcase(tmp_path / "dcase")
    with pytest.warns(ViclabWarning) as seen:
        test = load_sound("dcase", "test", tmp_path, SoundConfig(clip_seconds=0.2), use_cache=False)
    assert len(test) == 6  # the well-named ones
    message = str(seen[0].message)
    assert "3 sound file(s)" in message and "<machine>/{train,test}/{normal,anomaly}_id_XX_*.wav" in message
    for name in ("anomaly_id_04.wav", "Anomaly_id_04_x.wav", "abnormal_id_04_0001.wav"):
        assert name in message
    assert str(root) in message


def test_a_flat_folder_of_dcase_named_files_says_what_it_found(tmp_path):
    flat = tmp_path / "clips"
    for i in range(36):
        _wav(flat / f"fan_normal_id_00_{i:08d}.wav", _tone(0.05))
    with pytest.raises(ViclabError) as e:
        load_sound("dcase", "train", flat, SoundConfig(clip_seconds=0.05), use_cache=False)
    message = str(e.value)
    assert "36 sound file(s)" in message and "fan_normal_id_00_00000000.wav" in message
    assert "<machine>/{train,test}/{normal,anomaly}_id_XX_*.wav" in message and "move them into that layout" in message


def test_mimii_and_fsdd_name_the_files_they_skip(tmp_path):
    base = tmp_path / "mimii" / "fan"
    for cond in ("normal", "abnormal"):
        for i in range(2):
            _wav(base / "id_00" / cond / f"{i}.wav", _tone())
    _wav(base / "id_00" / "broken" / "0.wav", _tone())
    _wav(base / "machine_00" / "normal" / "0.wav", _tone())
    with pytest.warns(ViclabWarning, match=r"2 sound file\(s\) .* <machine>/id_XX/\{normal,abnormal\}/\*\.wav"):
        load_sound("mimii", "test", tmp_path, SoundConfig(clip_seconds=0.2, test_share=0.5), use_cache=False)
    rec = tmp_path / "fsdd" / "recordings"
    for i in range(6):
        _wav(rec / f"3_ann_{i}.wav", _tone(0.1, 8_000), 8_000)
    _wav(rec / "3-ann-7.wav", _tone(0.1, 8_000), 8_000)
    with pytest.warns(ViclabWarning, match=r"1 sound file\(s\) .*\{digit\}_\{speaker\}_\{index\}\.wav.*3-ann-7\.wav"):
        load_sound("fsdd", "test", tmp_path, SoundConfig(rate=8_000, clip_seconds=0.1), use_cache=False)


def test_class_folders_name_the_files_beside_train_and_test(tmp_path):
    root = tmp_path / "sounds"
    _wav(root / "train" / "dog" / "a.wav", _tone())
    _wav(root / "test" / "dog" / "b.wav", _tone())
    _wav(root / "valid" / "dog" / "c.wav", _tone())
    with pytest.warns(ViclabWarning, match=r"1 sound file\(s\) .*/\{train,test\}/<class>/<file> .*valid/dog/c\.wav"):
        assert len(load_sound("sounds", "train", tmp_path, SoundConfig(clip_seconds=0.2), use_cache=False)) == 1


def test_a_layout_that_places_every_file_says_nothing(tmp_path):
    _dcase(tmp_path / "dcase")
    for name in ("anomaly_id_04.wav", "Anomaly_id_04_x.wav", "abnormal_id_04_0001.wav"):
        (tmp_path / "dcase" / "fan" / "test" / name).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_sound("dcase", "test", tmp_path, SoundConfig(clip_seconds=0.2), use_cache=False)


# --- downloads and dataset names --------------------------------------------------------------


def test_a_large_download_waits_for_the_opt_in(tmp_path, monkeypatch):
    """A mistyped folder for MIMII (18.8 GB): refused before any network call, unless VICLAB_DOWNLOAD=1."""
    import urllib.error

    from viclab.data import download

    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    monkeypatch.delenv("VICLAB_DOWNLOAD", raising=False)
    typo = tmp_path / "dta"
    with pytest.raises(ViclabError) as e:
        load_sound("mimii", "train", typo, SoundConfig(), use_cache=False)
    message = str(e.value)
    assert "mimii" in message and "18.8 GB" in message and str(typo / "mimii") in message
    assert "VICLAB_DOWNLOAD=1" in message and "--data-dir" in message
    assert calls == [] and not typo.exists()
    monkeypatch.setenv("VICLAB_DOWNLOAD", "1")
    with pytest.raises(ViclabError, match="cannot download"):
        load_sound("mimii", "train", typo, SoundConfig(), use_cache=False)
    assert calls  # opted in: the download was tried


def test_an_unknown_dataset_lists_image_and_sound_datasets():
    with pytest.raises(ViclabError) as e:
        load_images("mimi", "train")
    message = str(e.value)
    assert "unknown dataset 'mimi'" in message
    for name in ("cifar10", "mnist", "fashion_mnist", "folder", "fsdd", "mimii", "dcase"):
        assert name in message
