"""Before/after waveforms of a real track retargeted by the heuristic: the README's picture of a retarget.

Run from the repository root (a figure, not a test):

    python bench/plot_retarget_waveforms.py [SOURCE] [--factors 0.75 1.5] [--out docs/retarget_waveforms.png]

SOURCE defaults to a track of the real corpus (``scripts/make_corpus.py``) when it is there, else
the licensed stereo clip in ``tests/data``.  The whole track is retargeted by the heuristic to each
factor of its beats (``editing.baselines.retarget_heuristic``) and rendered from the source at its
own rate and channels with its lead-in and ring-out (``editing.render.render_native``), as
``manage.py retarget --method heuristic`` delivers it.  One row per waveform (the source, then each
output), on one time axis: seams as red lines, the lead-in and the ring-out shaded, and in the
outputs each LOOP_PHRASE seam (a whole phrase played again) marked with a green band over the repeat.
It prints, per output, the duration, sample rate and channels, and how many seams and phrase repeats.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CORPUS_TRACK = ROOT / "var" / "corpus" / "wesnoth-1-16-music-journeys-end.flac"
CLIP = ROOT / "tests" / "data" / "caribbean-ending-stereo-44k.ogg"


def retarget(source: Path, factor: float):
    """(native source, result, edit) of the whole ``source`` retargeted by the heuristic to ``factor`` of its beats."""
    from editing.audio import analyze_file, load_native
    from editing.baselines import retarget_heuristic
    from editing.dense import dense_context
    from editing.edit import apply_actions, reachable_target
    from editing.render import render_native

    analysis, _, _ = analyze_file(source)
    context = dense_context(analysis.features, analysis.beat_samples, analysis.bar_positions)
    target = reachable_target(analysis.bar_positions, round(factor * analysis.n_beats))
    actions = retarget_heuristic(context=context, excerpt_start=0, bar_positions=analysis.bar_positions,
                                 target_beats=target)
    edit = apply_actions(actions, excerpt_start=0, bar_positions=analysis.bar_positions, target_beats=target)
    native = load_native(source)
    result = render_native(native.samples, native.sample_rate, analysis.beat_samples, analysis.sample_rate, edit)
    return native, result, actions


def envelope(audio: np.ndarray, sample_rate: int, step_seconds: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """(times, peak of |x| over both channels per ``step_seconds``): what the eye reads as a waveform."""
    mono = np.abs(audio).max(axis=1) if audio.ndim == 2 else np.abs(audio)
    step = max(1, int(step_seconds * sample_rate))
    n = mono.size // step
    peaks = mono[: n * step].reshape(n, step).max(axis=1)
    return np.arange(n) * step / sample_rate, peaks


def main() -> None:
    from editing.edit import Action

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=CORPUS_TRACK if CORPUS_TRACK.is_file() else CLIP)
    parser.add_argument("--factors", type=float, nargs="+", default=[0.75, 1.5])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "retarget_waveforms.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = [(factor, *retarget(args.source, factor)) for factor in args.factors]
    native = outputs[0][1]
    rows = [("source", native.samples, native.sample_rate, None, None)]
    for factor, _, result, actions in outputs:
        rows.append((f"{factor:g}x", result.audio, result.sample_rate, result, actions))
    longest = max(r[1].shape[0] / r[2] for r in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 1.9 * len(rows)), sharex=True, squeeze=False)
    for ax, (label, audio, sr, result, actions) in zip(axes[:, 0], rows):
        t, peaks = envelope(audio, sr)
        ax.fill_between(t, -peaks, peaks, color="#345", linewidth=0)
        ax.set_ylim(-1.05, 1.05)
        ax.set_yticks([])
        duration = audio.shape[0] / sr
        channels = 1 if audio.ndim == 1 else audio.shape[1]
        if result is None:
            ax.set_ylabel("source", rotation=0, ha="right", va="center")
            ax.set_title(f"{args.source.name}: {duration:.1f} s, {sr} Hz, {channels} channel(s)", fontsize=9, loc="left")
            continue
        starts = result.beat_starts_seconds
        ax.axvspan(0, starts[0], color="#fc6", alpha=0.5, linewidth=0)  # lead-in, as recorded
        ax.axvspan(starts[-1], duration, color="#fc6", alpha=0.5, linewidth=0)  # ring-out, as recorded
        for seam in result.seam_seconds:
            ax.axvline(seam, color="#c22", linewidth=0.8)
        phrase_repeats = 0
        beats = result.track_beats
        for i in range(1, len(beats)):
            if beats[i] < beats[i - 1] and beats[i - 1] - beats[i] + 1 >= 12:  # a whole phrase played again
                phrase_repeats += 1
                length = beats[i - 1] - beats[i] + 1
                ax.axvspan(starts[i], starts[min(i + length, len(starts) - 1)], color="#3a3", alpha=0.18,
                           linewidth=0)
        n_phrase_moves = sum(a == Action.LOOP_PHRASE for a in actions)
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
        ax.set_title(f"heuristic retarget to {label}: {duration:.1f} s, {sr} Hz, {channels} channel(s), "
                     f"{len(result.seam_seconds)} seams (red), {phrase_repeats} whole-phrase repeats (green); "
                     f"lead-in and ring-out as recorded (amber)", fontsize=9, loc="left")
        print(f"{label}: {duration:.2f} s, {sr} Hz, {channels} ch, {len(result.seam_seconds)} seams, "
              f"{n_phrase_moves} LOOP_PHRASE, {phrase_repeats} whole-phrase repeats")
    axes[-1, 0].set_xlim(0, longest)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
