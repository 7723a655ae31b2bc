"""Resynthesis helpers: frames back from stacked windows, machine IDs from origins."""

from __future__ import annotations

import pytest
import torch

from viclab.models import stack_frames
from viclab.sound import machine_id, unstack_frames


def test_unstacking_stacked_windows_gives_the_frames_back():
    x = torch.randn(1, 1, 12, 30)
    windows = stack_frames(x, 5)[0]
    torch.testing.assert_close(unstack_frames(windows, 5, 12), x[0, 0])


def test_unstacking_averages_each_frame_over_its_windows():
    windows = torch.zeros(4, 3 * 2)  # 4 windows of 3 frames of 2 mels -> 6 frames
    windows[0] = 1.0  # frames 0, 1, 2 get a 1 from window 0 only
    out = unstack_frames(windows, 3, 2)
    # frame 0 is in window 0 alone; frame 1 in windows 0, 1; frame 2 in 0, 1, 2; frame 3 in 1, 2, 3
    torch.testing.assert_close(out[0], torch.tensor([1.0, 1 / 2, 1 / 3, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("origin, expected", [("mimii:-6_dB_fan/fan/id_04/normal/00000001.wav", "id_04"),
                                              ("dcase:slider/test/anomaly_id_02_00000010.wav", "id_02")])
def test_machine_id(origin, expected):
    assert machine_id(origin) == expected
