"""Sound files and layouts: every format decoded correctly (or refused in one line), resampling
against scipy's polyphase filter, each layout parsed from files written here, the clip cache keyed
by content."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import serve
from viclab.config import SoundConfig, resolve
from viclab.core.errors import ViclabError
from viclab.data import dataset_modality, load_inputs, load_sound, spectrograms
from viclab.data.sounds import cut, decode

sf = pytest.importorskip("soundfile")


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    wave = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave


def write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("subtype, tolerance", [("PCM_U8", 1 / 128), ("PCM_16", 1 / 32768), ("PCM_24", 1 / 2 ** 23),
                                                ("FLOAT", 1e-7)])
def test_integer_and_float_wavs_decode_to_the_same_wave(tmp_path, subtype, tolerance):
    wave = tone(0.25, 8_000)
    got = decode(write(tmp_path / "x.wav", wave, 8_000, subtype), 8_000)
    assert got.dtype == np.float32 and got.shape == wave.shape
    assert np.abs(got - wave).max() <= tolerance * 1.01


def test_flac_and_ogg(tmp_path):
    wave = tone(0.5, 16_000)
    np.testing.assert_allclose(decode(write(tmp_path / "x.flac", wave, 16_000), 16_000), wave, atol=1 / 32768 * 1.01)
    ogg = decode(write(tmp_path / "x.ogg", wave, 16_000, "VORBIS"), 16_000)  # lossy: close, not equal
    assert len(ogg) == len(wave) and np.corrcoef(ogg, wave)[0, 1] > 0.99


def test_stereo_is_mixed_or_one_channel_kept(tmp_path):
    stereo = tone(0.25, 8_000, channels=2)  # channel 1 is twice channel 0
    path = write(tmp_path / "st.wav", stereo, 8_000, "FLOAT")
    np.testing.assert_allclose(decode(path, 8_000), stereo.mean(1), atol=1e-7)
    np.testing.assert_allclose(decode(path, 8_000, channel=1), stereo[:, 1], atol=1e-7)
    with pytest.raises(ViclabError, match="has 2 channel"):
        decode(path, 8_000, channel=2)


def test_resampling_44k1_to_16k_matches_scipy(tmp_path):
    from scipy.signal import resample_poly

    rng = np.random.default_rng(0)
    # band-limited content well below both Nyquist frequencies: every good resampler agrees on it
    t = np.arange(44_100) / 44_100
    amps, phases = rng.uniform(0.05, 0.2, 5), rng.uniform(0, 6, 5)
    wave = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in zip(amps, (150, 700, 1900, 3100, 5200), phases))
    got = decode(write(tmp_path / "cd.wav", wave, 44_100, "FLOAT"), 16_000)
    ref = resample_poly(wave, 160, 441)
    assert len(got) == len(ref) == 16_000
    inner = slice(200, -200)  # the two filters' edges differ
    assert np.abs(got[inner] - ref[inner]).max() < 2e-3 * np.abs(ref).max()


@pytest.mark.parametrize("content, message", [(b"", "cannot decode"), (b"RIFF\x00\x00\x00\x00WAVEjunk" * 3,
                                                                         "cannot decode")])
def test_corrupt_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(ViclabError, match=message) as err:
        decode(path, 8_000)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_file_with_no_samples_is_refused(tmp_path):
    path = write(tmp_path / "empty.wav", np.zeros(0), 8_000)
    with pytest.raises(ViclabError, match="holds no samples"):
        decode(path, 8_000)


def test_cut_pads_crops_and_slides():
    wave = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(cut(wave, 4), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(cut(wave, 12), [[*range(1, 11), 0, 0]])
    np.testing.assert_array_equal(cut(wave, 4, hop=3), [[1, 2, 3, 4], [4, 5, 6, 7], [7, 8, 9, 10]])
    np.testing.assert_array_equal(cut(wave, 4, hop=4), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]])
    np.testing.assert_array_equal(cut(wave[:2], 4, hop=2), [[1, 2, 0, 0]])


# --- layouts -----------------------------------------------------------------------------------


def fsdd(root: Path) -> Path:
    rec = root / "fsdd" / "recordings"
    for digit in (0, 1, 2):
        for speaker in ("ann", "bob"):
            for index in range(7):
                write(rec / f"{digit}_{speaker}_{index}.wav", tone(0.1 + 0.01 * index, 8_000, 300 + 100 * digit), 8_000)
    (rec / "notes.txt").write_text("not a sound")
    return root


def test_fsdd_index_and_speaker_splits(tmp_path):
    root = fsdd(tmp_path)
    cfg = SoundConfig(rate=8_000, clip_seconds=0.2)
    train, test = load_sound("fsdd", "train", root, cfg, use_cache=False), load_sound("fsdd", "test", root, cfg,
                                                                                    use_cache=False)
    assert train.classes == test.classes == ("0", "1", "2")
    assert len(train) == 3 * 2 * 2 and len(test) == 3 * 2 * 5  # indexes 5-6 train, 0-4 test (FSDD's split)
    assert all(int(Path(o).stem.split("_")[2]) <= 4 for o in test.origin)
    assert train.clips.shape == (12, 1600)
    by_speaker = SoundConfig(rate=8_000, clip_seconds=0.2, split="speaker", test_speakers=("bob",), label="speaker")
    tr, te = (load_sound("fsdd", s, root, by_speaker, use_cache=False) for s in ("train", "test"))
    assert set(tr.attrs["speaker"]) == {"ann"} and set(te.attrs["speaker"]) == {"bob"} and len(tr) == len(te) == 21
    assert tr.classes == te.classes == ("ann", "bob")  # speakers as labels: a held-out speaker is a class too


def mimii(root: Path) -> Path:
    base = root / "mimii" / "-6_dB_fan" / "fan"
    for mid in ("id_00", "id_02"):
        for cond, n in (("normal", 6), ("abnormal", 3)):
            for i in range(n):
                write(base / mid / cond / f"{i:08d}.wav", tone(0.5, 16_000, 500 + 50 * i), 16_000)
    return root


def test_mimii_split_is_seeded_per_machine_id_and_keeps_every_abnormal_clip_for_test(tmp_path):
    root = mimii(tmp_path)
    cfg = SoundConfig(clip_seconds=0.5, test_share=0.5)
    train, test = (load_sound("mimii", s, root, cfg, use_cache=False) for s in ("train", "test"))
    assert train.classes == ("normal", "abnormal")
    assert (train.labels == 0).all() and len(train) == 2 * 3
    assert int((test.labels == 1).sum()) == 2 * 3 and int((test.labels == 0).sum()) == 2 * 3
    assert not set(train.origin) & set(test.origin)
    assert set(train.attrs["machine_id"]) == {"id_00", "id_02"} and set(train.attrs["machine"]) == {"fan"}
    spec = spectrograms(train, cfg)  # the machine IDs parsed once from the paths travel with the rows
    assert spec.modality == "spectrogram" and list(spec.rows([1, 0]).attrs["machine_id"]) == \
        [train.attrs["machine_id"][1], train.attrs["machine_id"][0]]
    one = load_sound("mimii", "train", root, SoundConfig(clip_seconds=0.5, test_share=0.5,
                                                         machine_ids=("id_02",)), use_cache=False)
    # the same files whether one machine ID or all are loaded
    assert list(one.origin) == [o for o in train.origin if "id_02" in o]
    other_seed = load_sound("mimii", "train", root, SoundConfig(clip_seconds=0.5, seed=1),
                            use_cache=False)
    assert set(other_seed.origin) != set(train.origin)
    few = SoundConfig(clip_seconds=0.5, test_share=0.5, max_files=4)
    small_train, small_test = (load_sound("mimii", s, root, few, use_cache=False) for s in ("train", "test"))
    assert len(small_train) == 2 * 2 and int((small_test.labels == 0).sum()) == 2 * 2
    assert int((small_test.labels == 1).sum()) == 2 * 3  # 3 abnormal files per ID: all kept
    assert set(small_train.origin) | set(small_test.origin) < set(train.origin) | set(test.origin)


def test_dcase_layout(tmp_path):
    root = tmp_path / "dcase"
    for i in range(3):
        write(root / "fan" / "train" / f"normal_id_00_{i:08d}.wav", tone(0.2, 16_000), 16_000)
        write(root / "fan" / "test" / f"anomaly_id_00_{i:08d}.wav", tone(0.2, 16_000, 900), 16_000)
    write(root / "fan" / "test" / "normal_id_02_00000000.wav", tone(0.2, 16_000), 16_000)
    cfg = SoundConfig(clip_seconds=0.2)
    train, test = (load_sound("dcase", s, tmp_path, cfg, use_cache=False) for s in ("train", "test"))
    assert len(train) == 3 and (train.labels == 0).all()
    assert sorted(test.labels.tolist()) == [0, 1, 1, 1] and set(test.attrs["machine_id"]) == {"id_00", "id_02"}
    assert len(load_sound("dcase", "test", tmp_path, SoundConfig(clip_seconds=0.2, machine_ids=("id_02",)),
                          use_cache=False)) == 1


def test_class_folders_any_rate_length_and_channels(tmp_path):
    root = tmp_path / "sounds"
    write(root / "train" / "dog" / "a.wav", tone(0.3, 44_100, channels=2), 44_100)
    write(root / "train" / "dog" / "b.flac", tone(1.7, 22_050), 22_050)
    write(root / "train" / "cat" / "c.wav", tone(0.05, 8_000), 8_000, "PCM_U8")
    write(root / "test" / "cat" / "d.wav", tone(0.5, 16_000), 16_000, "PCM_24")
    (root / "train" / "cat" / ".hidden.wav").write_bytes(b"junk")
    cfg = SoundConfig(rate=16_000, clip_seconds=0.5, window_hop_seconds=0.25)
    train = load_sound("sounds", "train", tmp_path, cfg, use_cache=False)
    assert train.classes == ("cat", "dog")
    # windows: 0.3 s -> 1, 1.7 s -> 6 (starts 0 .. 1.25 s), 0.05 s -> 1
    counts = {Path(o).name: int((train.origin == o).sum()) for o in set(train.origin)}
    assert counts == {"a.wav": 1, "b.flac": 6, "c.wav": 1}
    assert train.clips.shape == (8, 8_000)
    assert dataset_modality(str(root / "train")) == "spectrogram" and dataset_modality("cifar10") == "image"
    assert dataset_modality("mimii") == "spectrogram" and dataset_modality(str(tmp_path / "missing")) == "image"


def test_cache_is_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
    root = fsdd(tmp_path)
    cfg = SoundConfig(rate=8_000, clip_seconds=0.2)
    first = load_sound("fsdd", "test", root, cfg)
    assert len(list((tmp_path / "cache" / "sound").glob("*.npy"))) == 1
    again = load_sound("fsdd", "test", root, cfg)
    torch.testing.assert_close(first.clips, again.clips)
    # the same name, size and time, other samples: the cache must not answer for the old ones
    f = root / "fsdd" / "recordings" / "0_ann_0.wav"
    stat = f.stat()
    data, rate = sf.read(str(f))
    sf.write(str(f), -data, rate, subtype="PCM_16")
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = load_sound("fsdd", "test", root, cfg)
    row = list(changed.origin).index("recordings/0_ann_0.wav")
    torch.testing.assert_close(changed.clips[row], -first.clips[row], atol=1 / 32768, rtol=0)
    assert len(list((tmp_path / "cache" / "sound").glob("*.npy"))) == 2


def test_bad_layouts_are_one_line_errors(tmp_path):
    (tmp_path / "fsdd").mkdir()
    with pytest.raises(ViclabError, match="holds no FSDD recordings"):
        load_sound("fsdd", "train", tmp_path, SoundConfig(), use_cache=False)
    with pytest.raises(ViclabError, match="unknown sound dataset"):
        load_sound("speech", "train", tmp_path, SoundConfig())
    plain = tmp_path / "plain"
    write(plain / "x.wav", tone(0.1, 8_000), 8_000)
    with pytest.raises(ViclabError, match="holds no training clips"):
        load_sound("sounds", "train", plain, SoundConfig())


def test_load_inputs_gives_spectrograms_of_the_configured_shape(tmp_path):
    root = fsdd(tmp_path)
    cfg = resolve("train", "fsdd", overrides=["sound.n_mels=32"])
    x = load_inputs("fsdd", "test", root, cfg)
    assert x.images.dtype == torch.float32 and x.images.shape == (30, 1, 32, cfg.sound.frames)
    assert x.classes == ("0", "1", "2") and x.modality == "spectrogram"
    assert sorted(x.attrs) == ["digit", "speaker"] and len(x.attrs["speaker"]) == 30


def test_a_missing_set_is_downloaded_checksummed_and_extracted(tmp_path, monkeypatch):
    """FSDD's archive from its (mocked) publisher: verified, its recordings extracted, the archive removed."""
    import hashlib
    import io
    import zipfile

    from viclab.data import sounds as snd

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in ("3_ann_0.wav", "3_ann_9.wav"):
            wav = io.BytesIO()
            sf.write(wav, tone(0.1, 8_000), 8_000, format="WAV", subtype="PCM_16")
            z.writestr(f"free-spoken-digit-dataset-1.0.10/recordings/{name}", wav.getvalue())
        z.writestr("free-spoken-digit-dataset-1.0.10/README.md", "not a sound")
    payload = buf.getvalue()
    serve(monkeypatch, payload)
    archive = snd.DOWNLOADS["fsdd"][0]
    monkeypatch.setitem(snd.DOWNLOADS, "fsdd", [snd.Archive(archive.urls, archive.name, len(payload), "0" * 64,
                                                            "sha256", archive.members)])
    with pytest.raises(ViclabError, match="sha256"):
        load_sound("fsdd", "train", tmp_path / "data", SoundConfig(rate=8_000), use_cache=False)
    assert not (tmp_path / "data" / "fsdd").exists() or not list((tmp_path / "data").rglob("*.wav"))
    monkeypatch.setitem(snd.DOWNLOADS, "fsdd", [snd.Archive(archive.urls, archive.name, len(payload),
                                                            hashlib.sha256(payload).hexdigest(), "sha256",
                                                            archive.members)])
    train = load_sound("fsdd", "train", tmp_path / "data", SoundConfig(rate=8_000, clip_seconds=0.1), use_cache=False)
    assert list(train.origin) == ["recordings/3_ann_9.wav"]
    assert sorted(p.name for p in (tmp_path / "data").rglob("*") if p.is_file()) == ["3_ann_0.wav", "3_ann_9.wav"]
