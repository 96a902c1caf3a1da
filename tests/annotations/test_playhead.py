"""Playhead mapping between edits: same musical moment, nearest kept beat for a cut one; Python and JS agree."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from annotations.playhead import BeatMap, difference_region, locate, map_playhead

JS = Path(__file__).resolve().parents[2] / "static" / "js" / "beatmap.js"


def beat_map(track_beats, seconds_per_beat=0.5) -> BeatMap:
    n = len(track_beats)
    return BeatMap(np.arange(n + 1) * seconds_per_beat, np.asarray(track_beats))


FULL = beat_map(range(16))
CUT_4_TO_7 = beat_map([*range(4), *range(8, 16)], 0.5)
LOOPED_5 = beat_map([0, 1, 2, 3, 4, 5, 5, 6, 7], 0.4)


def test_same_beat_keeps_the_fraction_within_the_beat():
    # 2.25 s in FULL = beat 4 + half; LOOPED_5 plays beat 4 at 1.6..2.0 s.
    assert map_playhead(FULL, LOOPED_5, 2.25) == pytest.approx(1.8)


def test_a_cut_beat_lands_on_the_start_of_the_nearest_kept_beat():
    # Beat 5 was cut: nearest kept are 3 (distance 2) and 8 (3) -> beat 3, which CUT plays at 1.5 s.
    assert map_playhead(FULL, CUT_4_TO_7, 2.7) == pytest.approx(1.5)
    # Beat 7: nearest kept is 8, output beat 4 of CUT, at 2.0 s.
    assert map_playhead(FULL, CUT_4_TO_7, 3.9) == pytest.approx(2.0)


def test_a_repeated_beat_maps_to_the_occurrence_nearest_in_output_position():
    # LOOPED_5 plays beat 5 twice (output 5 and 6); FULL plays it once.
    # Both occurrences (2.0-2.4 s and 2.4-2.8 s) map to the one beat 5 of FULL (2.5-3.0 s), half way.
    assert map_playhead(LOOPED_5, FULL, 2.2) == pytest.approx(2.75)
    assert map_playhead(LOOPED_5, FULL, 2.6) == pytest.approx(2.75)
    assert locate(FULL, 2.7).track_beat == 5
    # From FULL's beat 5 (output 5), the nearer occurrence is output 5.
    assert map_playhead(FULL, LOOPED_5, 2.5) == pytest.approx(2.0)


def test_switching_there_and_back_returns_to_the_same_moment_when_both_play_the_beat():
    for t in np.linspace(0.01, 5.9, 40):
        back = map_playhead(CUT_4_TO_7, FULL, map_playhead(FULL, CUT_4_TO_7, map_playhead(CUT_4_TO_7, FULL, t)))
        assert back == pytest.approx(map_playhead(CUT_4_TO_7, FULL, t))


def test_the_end_of_an_edit_maps_into_the_last_beat():
    assert map_playhead(FULL, CUT_4_TO_7, 99.0) < CUT_4_TO_7.duration_seconds


def test_difference_region_is_where_the_edits_first_part_with_context_either_side():
    region = difference_region(FULL, CUT_4_TO_7, context_beats=2)
    assert region.a_seconds == pytest.approx((1.0, 3.0))  # beats 2..5 of FULL: 4 is where they part
    assert region.b_seconds == pytest.approx((1.0, 3.0))  # beats 2, 3 | 8, 9 of the cut: the seam in the middle
    assert difference_region(FULL, beat_map(range(16))) is None


def test_difference_region_stays_short_when_the_edits_never_meet_again():
    # Parted at output beat 2 and different to the end: the region is the parting, not the whole clip.
    region = difference_region(beat_map(range(64)), beat_map([0, 1, *range(40, 64)]), context_beats=4)
    assert region.a_seconds == pytest.approx((0.0, 3.0))
    assert region.b_seconds == pytest.approx((0.0, 3.0))


def test_difference_region_of_an_edit_that_stops_early_is_its_ending():
    region = difference_region(beat_map(range(16)), beat_map(range(12)), context_beats=4)
    assert region.a_seconds == pytest.approx((4.0, 8.0))  # beats 8..15 of the long one
    assert region.b_seconds == pytest.approx((4.0, 6.0))  # its last four beats


def test_bad_beat_map_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="3 beat boundaries for 3 output beats"):
        BeatMap(np.array([0.0, 1.0, 2.0]), np.array([0, 1, 2]))


@pytest.fixture(scope="module")
def rendered():
    """Real edits of a synthesized track, rendered by editing.render: all beats, a bar cut, a beat looped."""
    demo = pytest.importorskip("editing.demo")
    render = pytest.importorskip("editing.render")
    edit_lib = pytest.importorskip("editing.edit")
    sr = 22050
    spec = demo.DemoTrackSpec("playhead-test", 120.0, 57, ((0, False), (7, False)), (("verse", 8),))
    y, beat_times, bars = demo.synthesize_track(spec, sr=sr)
    boundaries = np.append(beat_times, beat_times[-1] + 60.0 / spec.tempo_bpm)
    beat_samples = np.round(boundaries * sr).astype(np.int64)
    keep, cut, loop = int(edit_lib.Action.KEEP), int(edit_lib.Action.CUT), int(edit_lib.Action.LOOP)
    n = 16
    # The builder writes the opening bar (source beats 0..3) and the final bar (12..15); the plans
    # act on the middle, source beats 4..11.
    plans = {
        "full": ([keep] * 8, 16),
        "cut": ([keep] * 4 + [cut] * 4, 12),   # source beats 8..11 dropped
        "loop": ([keep] + [loop] + [keep] * 6, 17),    # source beat 5 played twice
    }
    maps = {}
    for name, (actions, target) in plans.items():
        edit = edit_lib.apply_actions(actions, excerpt_start=4, bar_positions=bars[4:4 + n], target_beats=target)
        result = render.render_edit(y, sr, beat_samples, edit)
        maps[name] = BeatMap(result.beat_starts_seconds, result.track_beats)
    return maps


def test_real_edits_switching_at_a_cut_beat_lands_on_the_nearest_kept_beat(rendered):
    full, cut = rendered["full"], rendered["cut"]
    # Track beats 12..15 were cut (excerpt starts at beat 4).  Beat 13 is nearest to kept beat 11 ...
    i13 = int(np.flatnonzero(full.track_beats == 13)[0])
    t = (full.beat_starts_seconds[i13] + full.beat_starts_seconds[i13 + 1]) / 2
    landed = map_playhead(full, cut, t)
    j = locate(cut, landed + 1e-6)
    assert j.track_beat == 11 and j.fraction == pytest.approx(0.0, abs=0.01)
    # ... and beat 14 to kept beat 16.
    i14 = int(np.flatnonzero(full.track_beats == 14)[0])
    assert locate(cut, map_playhead(full, cut, full.beat_starts_seconds[i14] + 0.01) + 1e-6).track_beat == 16


def test_real_edits_keep_the_moment_within_a_shared_beat(rendered):
    full, loop = rendered["full"], rendered["loop"]
    i = int(np.flatnonzero(full.track_beats == 15)[0])
    start, end = full.beat_starts_seconds[i], full.beat_starts_seconds[i + 1]
    landed = map_playhead(full, loop, start + 0.3 * (end - start))
    where = locate(loop, landed)
    assert where.track_beat == 15 and where.fraction == pytest.approx(0.3, abs=0.01)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the pages' JavaScript twin")
def test_javascript_twin_agrees_with_python(rendered):
    cases = []
    for src_name, dst_name in [("full", "cut"), ("cut", "full"), ("full", "loop"), ("loop", "cut")]:
        src, dst = rendered[src_name], rendered[dst_name]
        for t in np.linspace(0.0, src.duration_seconds + 0.5, 97):
            cases.append({"src": src_name, "dst": dst_name, "t": float(t),
                          "expected": map_playhead(src, dst, float(t))})
    maps = {name: {"beat_starts_seconds": m.beat_starts_seconds.tolist(), "track_beats": m.track_beats.tolist()}
            for name, m in rendered.items()}
    script = (
        f"const {{ mapPlayhead }} = require({json.dumps(str(JS))});"
        "let data = ''; process.stdin.on('data', d => data += d); process.stdin.on('end', () => {"
        "  const { maps, cases } = JSON.parse(data);"
        "  console.log(JSON.stringify(cases.map(c => mapPlayhead(maps[c.src], maps[c.dst], c.t))));"
        "});"
    )
    out = subprocess.run(["node", "-e", script], input=json.dumps({"maps": maps, "cases": cases}),
                         capture_output=True, text=True, timeout=30, check=True)
    got = json.loads(out.stdout)
    assert got == pytest.approx([c["expected"] for c in cases], abs=1e-9)
