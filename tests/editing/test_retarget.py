"""editing/retarget.py: the duration asked for is what the retarget lasts, lead-in and ring-out included."""
from __future__ import annotations

import numpy as np
import pytest

from editing.retarget import RetargetError, plan_retarget

SR = 22050
BEAT = SR // 2  # 120 BPM
N_BEATS = 64
GRID = 1000 + np.arange(N_BEATS + 1, dtype=np.int64) * BEAT
BARS = (np.arange(N_BEATS) % 4).astype(np.int8)


def plan(target_seconds: float, **kwargs):
    return plan_retarget(beat_samples=GRID, bar_positions=BARS, sample_rate=SR, target_seconds=target_seconds, **kwargs)


@pytest.mark.parametrize("target_seconds", [20.0, 27.3, 45.0, 60.0])
def test_the_lead_in_and_ring_out_count_towards_the_duration(target_seconds):
    lead_in, ring_out = 0.8, 2.5
    planned = plan(target_seconds, lead_in_seconds=lead_in, ring_out_seconds=ring_out)
    # What the listener gets: the lead-in, the beats, the ring-out; within one beat of what was asked.
    heard = lead_in + planned.target_beats * 0.5 + ring_out
    assert abs(heard - target_seconds) <= 0.5
    assert planned.expected_seconds == pytest.approx(heard)
    assert (planned.lead_in_seconds, planned.ring_out_seconds) == (lead_in, ring_out)
    # Without counting them the same request would overshoot by their length.
    assert plan(target_seconds).target_beats * 0.5 + lead_in + ring_out - target_seconds > 2.5


def test_a_passage_inside_the_track_plays_neither():
    planned = plan(10.0, from_beat=8, to_beat=40, lead_in_seconds=0.8, ring_out_seconds=2.5)
    assert (planned.lead_in_seconds, planned.ring_out_seconds) == (0.0, 0.0)
    assert planned.target_beats == 20 and planned.passage_seconds == 16.0
    opening = plan(10.0, from_beat=0, to_beat=32, lead_in_seconds=0.8, ring_out_seconds=2.5)
    assert (opening.lead_in_seconds, opening.ring_out_seconds) == (0.8, 0.0)


def test_the_range_is_half_to_twice_the_beats_plus_the_edges():
    lead_in, ring_out = 1.0, 3.0  # the beats last 32 s
    plan(lead_in + 16.0 + ring_out, lead_in_seconds=lead_in, ring_out_seconds=ring_out)
    plan(lead_in + 64.0 + ring_out, lead_in_seconds=lead_in, ring_out_seconds=ring_out)
    with pytest.raises(RetargetError, match="half to twice the passage's 0:36.0"):
        plan(lead_in + 15.0 + ring_out, lead_in_seconds=lead_in, ring_out_seconds=ring_out)
    with pytest.raises(RetargetError, match="must be >= 0"):
        plan(30.0, lead_in_seconds=-1.0)
