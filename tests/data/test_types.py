"""ImageData says what it holds: its modality is checked against the tensor, and per-row attributes travel
with the rows through selection and concatenation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.data import ImageData


def spectrograms(n: int, files: list[str] | None = None, windows: list[int] | None = None) -> ImageData:
    return ImageData(torch.randn(n, 1, 4, 6), torch.arange(n) % 2, ("normal", "abnormal"),
                     None if files is None else np.array(files), None if windows is None else np.array(windows),
                     "spectrogram", {"machine_id": np.array([f"id_{i:02d}" for i in range(n)])})


def test_the_modality_must_match_the_tensor():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert ImageData(images, torch.zeros(2, dtype=torch.int64), ("a",)).modality == "image"
    with pytest.raises(ValueError, match="spectrogram data must be"):
        ImageData(images, torch.zeros(2, dtype=torch.int64), ("a",), modality="spectrogram")
    with pytest.raises(ValueError, match="image data must be"):
        ImageData(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ("a",))
    with pytest.raises(ValueError, match="spectrogram data must be"):
        ImageData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ("a",), modality="spectrogram")
    with pytest.raises(ValueError, match="unknown modality"):
        ImageData(images, torch.zeros(2, dtype=torch.int64), ("a",), modality="video")


def test_rows_and_cat_keep_the_modality_and_the_attributes():
    data = spectrograms(4, ["a", "a", "b", "c"], [0, 1, 0, 0])
    rows = data.rows([3, 1])
    assert rows.modality == "spectrogram" and list(rows.attrs["machine_id"]) == ["id_03", "id_01"]
    assert list(rows.ids()) == ["c#w0", "a#w1"]
    both = ImageData.cat([rows, data.rows(slice(0, 1))], ("x", "y"))
    assert both.classes == ("x", "y") and both.modality == "spectrogram" and len(both) == 3
    assert list(both.attrs["machine_id"]) == ["id_03", "id_01", "id_00"]
    assert list(both.files) == ["c", "a", "a"] and list(both.windows) == [0, 1, 0]
    # an attribute, files or windows only some parts carry is dropped, never filled in
    bare = ImageData(torch.zeros(1, 1, 4, 6), torch.zeros(1, dtype=torch.int64), ("x", "y"), modality="spectrogram")
    mixed = ImageData.cat([rows, bare], ("x", "y"))
    assert mixed.attrs == {} and mixed.files is None and mixed.windows is None


def test_sources_group_the_windows_of_one_file():
    assert spectrograms(2, ["a", "b"]).sources() is None  # whole files: each row its own source
    assert list(spectrograms(3, ["a", "a", "b"], [0, 1, 0]).sources()) == ["a", "a", "b"]
