/* Beat-mapped A/B switching: where the same musical moment lies in another edit of the track.
 *
 * The twin of annotations/playhead.py (locate / target_beat / map_playhead); keep them in
 * step: tests/rlhf/test_retarget_page.py runs these functions against the Python ones.
 * A beat map is what the API gives per edit: {beat_starts_seconds: [n + 1], track_beats: [n]}.
 * Loaded as a classic script, it defines the global BeatMap; under node, module.exports.
 */
"use strict";

const BeatMap = (function beatMap() {
  // Output beat playing at `seconds` (clamped to the edit), the track beat it plays and the fraction elapsed in [0, 1).
  function locate(map, seconds) {
    const starts = map.beat_starts_seconds, n = map.track_beats.length;
    let lo = 0, hi = starts.length;              // first index with starts[i] > seconds
    while (lo < hi) { const mid = (lo + hi) >> 1; if (starts[mid] <= seconds) lo = mid + 1; else hi = mid; }
    const i = Math.min(Math.max(lo - 1, 0), n - 1);
    const length = starts[i + 1] - starts[i];
    let fraction = length <= 0 ? 0 : Math.min(Math.max((seconds - starts[i]) / length, 0), 1);
    fraction = Math.min(fraction, 0.999);        // the very end still belongs to the last beat
    return { outputBeat: i, trackBeat: map.track_beats[i], fraction };
  }

  // Output beat of `map` to land on: the same track beat (the occurrence nearest in output position),
  // else the kept beat nearest in the track (ties: nearest in output position, then the earlier).
  function targetBeat(map, pos) {
    const beats = map.track_beats;
    let best = -1, bestKey = null;
    for (let j = 0; j < beats.length; j++) {
      const key = [Math.abs(beats[j] - pos.trackBeat), Math.abs(j - pos.outputBeat), j];
      if (best < 0 || key[0] < bestKey[0] || (key[0] === bestKey[0] && (key[1] < bestKey[1] ||
          (key[1] === bestKey[1] && key[2] < bestKey[2])))) { best = j; bestKey = key; }
    }
    return { beat: best, same: beats[best] === pos.trackBeat };
  }

  // Seconds in `dst` playing the same musical moment as `seconds` in `src`.
  function mapPlayhead(src, dst, seconds) {
    const pos = locate(src, seconds);
    const t = targetBeat(dst, pos);
    const start = dst.beat_starts_seconds[t.beat], end = dst.beat_starts_seconds[t.beat + 1];
    return start + (t.same ? pos.fraction : 0) * (end - start);
  }

  return { locate, targetBeat, mapPlayhead };
})();

if (typeof module !== "undefined") module.exports = BeatMap;
