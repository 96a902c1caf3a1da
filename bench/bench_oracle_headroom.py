"""Benchmark: how far a perfect seam cost could take the learned planner (the headroom), per listener.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_oracle_headroom.py [--listener module:NAME] [--seeds 2] [--corpus var/corpus]
        [--fit [--join-chroma] [--members 8 --pessimism 3]]

The learned planner is the heuristic's dynamic program with a learned seam cost, so no seam
model can do better than one that prices every seam exactly as the listener hears it.  This
script plans each held-out passage with that **oracle seam cost** and scores the plan against the
heuristic's by the listener on the full rendering, as ``bench_learned_planner.py --curve`` does
(same corpus split, same held-out passages per seed, same annotator model, the same nested
bootstrap over (seed, held-out track) then passages).

The oracle's cost of a seam ``a -> b`` is the listener's own score of a short rendering that
holds that one seam: track beats ``a - k .. a`` then ``b .. b + k`` (``k`` beats, at least
``--context-seconds`` either side), joined with the studio's 30 ms crossfade.  Terms that are not about one seam (length,
repeated beats) are left out, so the oracle is exact for seam terms and blind to the rest.

A win rate near 0.5 here means that the listener and the heuristic's seam cost agree: no seam
model, however many judgements it reads, can beat the heuristic by planning with the same moves.

``--fit``: also the learned planner's model class given exact labels instead of judgements: a
linear residual on the seam model's own features (``rlhf.learning.seam_model.seam_features``),
fitted by ridge regression to ``oracle - heuristic`` on every seam the planner prices in the
training tracks' passages (pessimism-free), then planned on the held-out passages.
``--join-chroma`` adds a chroma measure at the join (:class:`JoinChroma`, a probe: the default
listener hears with it); ``--members M --pessimism K`` fits M ridge residuals on bootstrap
resamples of the training tracks and plans at mean + K x spread off the heuristic's seams, as the
studio's seam model does.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learned_planner import corpus_tracks, passages_of  # noqa: E402  (sets Django up)

from editing.planner import RetargetPlanner, plan_actions  # noqa: E402
from editing.render import DEFAULT_CROSSFADE_MS  # noqa: E402
from rlhf.evidence.evaluation import listen  # noqa: E402
from rlhf.evidence.listeners import DEFAULT_LISTENER, clip_build, load_listener  # noqa: E402
from rlhf.evidence.simulate import AnnotatorModel  # noqa: E402
from rlhf.evidence.statistics import nested_bootstrap_ci  # noqa: E402
from editing.baselines import seam_cost  # noqa: E402
from rlhf.learning.seam_model import heuristic_plan, seam_features  # noqa: E402

_NOT_SEAMS = ("length", "repeats")


class OracleSeamCost:
    """The listener's seam terms of one track, for any seams ``a -> b`` (cached per seam)."""

    def __init__(self, listener, track, context_seconds: float) -> None:
        self.listener, self.track = listener, track
        seconds = np.diff(track.arrays.beat_samples) / track.sample_rate
        self.k = max(2, int(np.ceil(context_seconds / max(float(np.median(seconds)), 1e-3))))
        self.n = track.arrays.n_beats
        self.cache: dict[tuple[int, int], float] = {}

    def _seam_terms(self, before: list[int], after: list[int]) -> float:
        """The listener's seam terms of track beats ``before`` then ``after``, joined with a 30 ms crossfade."""
        y, sr, edges = self.track.audio, self.track.sample_rate, self.track.arrays.beat_samples
        head = y[edges[before[0]]: edges[before[-1] + 1]]
        tail = y[edges[after[0]]: edges[after[-1] + 1]]
        fade = min(int(DEFAULT_CROSSFADE_MS / 1000 * sr), head.shape[0] // 2, tail.shape[0] // 2)
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float64).reshape((-1,) + (1,) * (y.ndim - 1))
        joined = head[: head.shape[0] - fade] if fade else head
        mixed = head[head.shape[0] - fade:] * (1 - ramp) + tail[:fade] * ramp
        audio = np.concatenate([joined, mixed, tail[fade:]])
        beats = before + after
        lengths = np.diff(edges)[beats].astype(np.float64)
        lengths[len(before)] -= fade  # the tail's first beat starts where its fade-in does
        starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) / sr
        clip = clip_build(audio=audio, sample_rate=sr, output_beat_seconds=starts, source_beats=np.array(beats),
                          seam_seconds=[float(starts[len(before)])], track_audio=y, beat_samples=edges,
                          bar_positions=self.track.arrays.bar_positions, truth=self.track.truth,
                          excerpt_start=min(beats), n_source_beats=len(beats), target_beats=len(beats))
        terms = self.listener.terms(clip)
        return float(sum(v for name, v in terms.items() if name not in _NOT_SEAMS))

    def seam(self, a: int, b: int) -> float:
        if b == a + 1:
            return 0.0
        key = (a, b)
        if key not in self.cache:
            before = list(range(max(0, a - self.k + 1), a + 1))
            after = list(range(b, min(self.n, b + self.k)))
            self.cache[key] = max(0.0, self._seam_terms(before, after))
        return self.cache[key]

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        flat = [self.seam(int(x), int(y)) for x, y in zip(a.reshape(-1), b.reshape(-1))]
        return np.asarray(flat, dtype=np.float64).reshape(np.broadcast(a, b).shape)


class JoinChroma:
    """A 12-bin chroma (librosa's filters, one FFT) of the 200 ms after each beat's start and before its end.

    The ``--join-chroma`` probe adds, per seam ``a -> b``: how far the chroma heard across the join
    (end of ``a`` against start of ``b``) is from the one across the natural boundary ``a -> a + 1``
    (hinged at 0 and at 0.05) and the heard distance itself.  It is what the default listener hears,
    so it is a probe of the ceiling, never a feature of the studio's seam model.
    """

    WINDOW_S, GUARD_S = 0.2, 0.05

    def __init__(self, track) -> None:
        import librosa

        y = track.audio if track.audio.ndim == 1 else track.audio.mean(1)
        sr, edges = track.sample_rate, track.arrays.beat_samples
        w, g = int(self.WINDOW_S * sr), int(self.GUARD_S * sr)
        n_fft = 1 << int(np.ceil(np.log2(w)))
        bank, window = librosa.filters.chroma(sr=sr, n_fft=n_fft), np.hanning(w)

        def chroma(segment: np.ndarray) -> np.ndarray:
            segment = np.pad(segment, (0, max(0, w - segment.size)))
            v = bank @ np.abs(np.fft.rfft(segment * window, n_fft)) ** 2
            return v / (np.linalg.norm(v) + 1e-9)

        n = len(edges) - 1
        self.head = np.array([chroma(y[edges[i] + g: edges[i] + g + w]) for i in range(n)])
        self.tail = np.array([chroma(y[max(0, edges[i + 1] - g - w): max(0, edges[i + 1] - g)]) for i in range(n)])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        natural = np.minimum(a + 1, self.head.shape[0] - 1)
        heard = 1.0 - np.sum(self.tail[a] * self.head[b], axis=1)
        written = 1.0 - np.sum(self.tail[a] * self.head[natural], axis=1)
        return np.column_stack([np.maximum(heard - written, 0.0), np.maximum(heard - written - 0.05, 0.0), heard])


def _probe_features(track, scaled: np.ndarray, join: JoinChroma | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    phi = seam_features(scaled, a, b)
    return phi if join is None else np.column_stack([phi, join(a, b)])


def _oracle_fit(listener, train, seed: int, context_seconds: float, join_chroma: bool, members: int) -> np.ndarray:
    """Ridge weights (members, features) of ``oracle - heuristic`` over the seams the training passages price.

    Member 0 fits every training track; the others fit bootstrap resamples of the tracks.
    """
    xs, ys = [], []
    for track in train:
        oracle = OracleSeamCost(listener, track, context_seconds)
        for passage, _ in passages_of(track, np.random.default_rng(100 + seed), max(2, 48 // len(train))):
            RetargetPlanner(seam_costs=oracle, excerpt_start=passage.start, bar_positions=passage.bar_positions,
                            target_beats=passage.target_beats)  # prices every seam it could use
            scaled = passage.scaled
        keys = list(oracle.cache)
        if len(keys) > 3000:
            keys = [keys[i] for i in np.random.default_rng(seed).choice(len(keys), 3000, replace=False)]
        a, b = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
        xs.append(_probe_features(track, scaled, JoinChroma(track) if join_chroma else None, a, b))
        ys.append(np.array([oracle.cache[k] for k in keys]) - seam_cost(track.arrays.dense, a, b))
    rng = np.random.default_rng(seed)
    weights = []
    for m in range(members):
        drawn = np.arange(len(xs)) if m == 0 else rng.choice(len(xs), len(xs))
        x = np.concatenate([xs[i] for i in drawn])
        y = np.concatenate([ys[i] for i in drawn])
        weights.append(np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ y))
    return np.array(weights)


def _fitted_cost(track, passage, weights: np.ndarray, join: JoinChroma | None, pessimism: float,
                 heuristic_seams: set[tuple[int, int]]):
    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        base = np.asarray(seam_cost(track.arrays.dense, a, b), dtype=np.float64)
        a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
        residuals = _probe_features(track, passage.scaled, join, a, b) @ weights.T  # (seams, members)
        known = np.array([(int(x), int(y)) in heuristic_seams for x, y in zip(a, b)], dtype=bool)
        residual = residuals.mean(1) + np.where(known, 0.0, pessimism * residuals.std(1))
        return np.maximum(base.reshape(-1) + residual, 0.0).reshape(base.shape)
    return cost


def headroom(listener_spec: str, seeds: int, corpus: str | None, context_seconds: float, fit: bool = False,
             join_chroma: bool = False, members: int = 1, pessimism: float = 0.0) -> list[dict]:
    listener = load_listener(listener_spec)
    annotator = AnnotatorModel()
    tracks = corpus_tracks(corpus)
    n_held = max(2, len(tracks) // 3)
    arms = ("oracle", "oracle_fitted_linear") if fit else ("oracle",)
    cells = {arm: {"tracks": {}, "margins": [], "identical": []} for arm in arms}
    began = time.perf_counter()
    for seed in range(seeds):
        order = np.roll(np.arange(len(tracks)), -n_held * seed)
        train, held = [tracks[i] for i in order[:-n_held]], [tracks[i] for i in order[-n_held:]]
        weights = _oracle_fit(listener, train, seed, context_seconds, join_chroma, members) if fit else None
        for track in held:
            oracle = OracleSeamCost(listener, track, context_seconds)
            join = JoinChroma(track) if fit and join_chroma else None
            for passage, excerpt in passages_of(track, np.random.default_rng(500 + seed), max(5, 30 // len(held))):
                base = heuristic_plan(passage)
                base_score = None
                for arm in arms:
                    cost = oracle if arm == "oracle" else _fitted_cost(track, passage, weights, join, pessimism,
                                                                        set(passage.seams(base)))
                    planner = RetargetPlanner(seam_costs=cost, excerpt_start=passage.start,
                                              bar_positions=passage.bar_positions, target_beats=passage.target_beats)
                    plan = plan_actions(planner, bar_positions=passage.bar_positions, target_beats=passage.target_beats)
                    same = passage.edit(plan).track_beats().tolist() == passage.edit(base).track_beats().tolist()
                    if not same and base_score is None:
                        base_score = listen(listener, track, excerpt, passage.edit(base))
                    margin = 0.0 if same else listen(listener, track, excerpt, passage.edit(plan)) - base_score
                    cell = cells[arm]
                    cell["margins"].append(margin)
                    cell["identical"].append(same)
                    cell["tracks"].setdefault((seed, track.arrays.name), []).append(
                        float(annotator.win_probability(margin)))
        print(json.dumps({"seed": seed, "seconds": round(time.perf_counter() - began, 1)}), flush=True)
    out = []
    for arm, cell in cells.items():
        wins = np.concatenate([np.array(v) for v in cell["tracks"].values()])
        lo, hi = nested_bootstrap_ci(list(cell["tracks"].values()))
        margins = np.array(cell["margins"])
        out.append({"listener": listener_spec, "arm": arm, "seeds": seeds, "held_out_passages": int(margins.size),
                    "win_rate": round(float(wins.mean()), 3), "ci95": [round(lo, 3), round(hi, 3)],
                    "better": round(float(np.mean(margins >= annotator.tie_margin)), 3),
                    "worse": round(float(np.mean(margins <= -annotator.tie_margin)), 3),
                    "identical": round(float(np.mean(cell["identical"])), 3),
                    "mean_margin": round(float(margins.mean()), 3),
                    **({} if arm == "oracle" else {"join_chroma": join_chroma, "members": members, "pessimism": pessimism})})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listener", default=DEFAULT_LISTENER)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--corpus", default=None, help="a folder of audio files (scripts/make_corpus.py); default: "
                        "the generated demo corpus")
    parser.add_argument("--context-seconds", type=float, default=1.2,
                        help="audio either side of a priced seam (the texture listener reads 1 s)")
    parser.add_argument("--fit", action="store_true", help="also the linear residual fitted to the oracle's costs")
    parser.add_argument("--join-chroma", action="store_true", help="--fit with a chroma measure at the join (a probe)")
    parser.add_argument("--members", type=int, default=1, help="--fit: ridge fits on bootstrap resamples of tracks")
    parser.add_argument("--pessimism", type=float, default=0.0, help="--fit: plan at mean + k x spread off the "
                        "heuristic's seams")
    args = parser.parse_args()
    for row in headroom(args.listener, args.seeds, args.corpus, args.context_seconds, args.fit, args.join_chroma,
                        args.members, args.pessimism):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
