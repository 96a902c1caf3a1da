"""editing/retarget.py: the duration asked for is what the retarget lasts, lead-in and ring-out included, and
the range :func:`duration_bounds` gives is exactly what :func:`plan_retarget` accepts."""
from __future__ import annotations

import numpy as np
import pytest

from editing.edit import target_range
from editing.retarget import RetargetError, duration_bounds, plan_retarget

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


# An uneven grid (tempo drifting from 120 to about 100 BPM, odd sample offsets), so that no bound is a
# round figure before rounding: a beat range's share of the beats is not its share of the time.
UNEVEN = 977 + np.concatenate([[0], np.cumsum(np.linspace(11025, 13331, N_BEATS).astype(np.int64))])
EDGES = dict(lead_in_seconds=0.8317, ring_out_seconds=2.4571)


@pytest.mark.parametrize("passage", [{}, {"from_beat": 0, "to_beat": 24}, {"from_beat": 13, "to_beat": 50},
                                     {"from_beat": 21, "to_beat": N_BEATS}])
def test_every_duration_within_the_bounds_is_accepted_and_none_outside(passage):
    bounds = duration_bounds(beat_samples=UNEVEN, bar_positions=BARS, sample_rate=SR, **passage, **EDGES)
    lead_in = EDGES["lead_in_seconds"] if bounds.start_beat == 0 else 0.0
    ring_out = EDGES["ring_out_seconds"] if bounds.stop_beat == N_BEATS else 0.0
    beats = (UNEVEN[bounds.stop_beat] - UNEVEN[bounds.start_beat]) / SR
    # The reachable output beats (half to twice, as far as the bars allow), the edges unstretched,
    # rounded inward to a tenth of a second.
    low, high = target_range(BARS[bounds.start_beat:bounds.stop_beat])
    mean_beat = beats / bounds.n_beats
    assert (bounds.lead_in_seconds, bounds.ring_out_seconds) == (lead_in, ring_out)
    assert bounds.passage_seconds == pytest.approx(lead_in + beats + ring_out)
    assert 0 <= bounds.lowest_seconds - (lead_in + max(beats / 2, low * mean_beat) + ring_out) < 0.1
    assert 0 <= (lead_in + min(2 * beats, high * mean_beat) + ring_out) - bounds.highest_seconds < 0.1
    for bound in (bounds.lowest_seconds, bounds.highest_seconds):
        assert bound == float(f"{bound:.1f}")  # a figure one can type

    def accepted(seconds) -> bool:
        try:
            plan_retarget(beat_samples=UNEVEN, bar_positions=BARS, sample_rate=SR, target_seconds=seconds,
                          **passage, **EDGES)
        except RetargetError as err:
            assert "is outside" in str(err)
            return False
        return True

    # Every tenth the page's slider offers, the ends included, as the page sends them (m:ss back to seconds).
    lowest, highest = round(bounds.lowest_seconds * 10), round(bounds.highest_seconds * 10)
    for tenths in range(lowest, highest + 1):
        assert accepted(tenths / 10), tenths / 10
    for typed in (bounds.lowest_seconds, bounds.highest_seconds):
        minutes, rest = divmod(round(typed * 10), 600)
        assert accepted(minutes * 60 + float(f"{rest / 10:.1f}"))
    for outside in (bounds.lowest_seconds - 0.001, bounds.lowest_seconds - 0.1, bounds.highest_seconds + 0.001,
                    bounds.highest_seconds + 0.1):
        assert not accepted(outside), outside


def test_a_refusal_names_the_range_the_bounds_give():
    bounds = duration_bounds(beat_samples=UNEVEN, bar_positions=BARS, sample_rate=SR, from_beat=13, to_beat=50)
    with pytest.raises(RetargetError) as refused:
        plan_retarget(beat_samples=UNEVEN, bar_positions=BARS, sample_rate=SR, target_seconds=1.0, from_beat=13,
                      to_beat=50, name="song")
    assert str(refused.value) == f"song: 0:01.0 is outside {bounds.describe()}"
    assert bounds.describe().startswith("0:") and "half to twice the passage's" in bounds.describe()


@pytest.mark.parametrize("passage, reason", [
    ({"from_beat": 0, "to_beat": 4}, "shorter than two bars"),
    ({"from_beat": 40, "to_beat": 30}, "not a range of its 64 beats"),
    ({"from_beat": 0, "to_beat": 65}, "not a range of its 64 beats"),
])
def test_the_bounds_refuse_a_passage_as_the_plan_does(passage, reason):
    with pytest.raises(RetargetError, match=reason) as from_bounds:
        duration_bounds(beat_samples=GRID, bar_positions=BARS, sample_rate=SR, name="song", **passage)
    with pytest.raises(RetargetError) as from_plan:
        plan(30.0, name="song", **passage)
    assert str(from_bounds.value) == str(from_plan.value)


def test_a_short_passage_offers_only_the_lengths_its_bars_reach_and_delivers_them():
    # 16 beats starting after a downbeat: the partial bars at both ends are kept as written, so they
    # can become 12..27 beats, not 8..32.
    bounds = duration_bounds(beat_samples=GRID, bar_positions=BARS, sample_rate=SR, from_beat=9, to_beat=25)
    low, high = target_range(BARS[9:25])
    assert (low, high) == (12, 27)
    beat = BEAT / SR
    assert bounds.lowest_seconds == pytest.approx(np.ceil(low * beat * 10) / 10)
    assert bounds.highest_seconds == pytest.approx(np.floor(high * beat * 10) / 10)
    for seconds in (bounds.lowest_seconds, bounds.highest_seconds):
        made = plan(seconds, from_beat=9, to_beat=25)
        assert abs(made.expected_seconds - seconds) <= beat  # delivered within a beat of what was asked
    with pytest.raises(RetargetError, match="as far as its bars allow"):
        plan(8 * beat, from_beat=9, to_beat=25)
