"""Benchmark: beat analysis speed of editing.audio against a naive librosa pipeline.

Prints figures; it is not a test.  Run from the repository root:

    python bench/bench_analysis.py [--repeats 3]

* Both pipelines analyse the same decoded demo corpus (decoding excluded), on
  one core (BLAS, OpenMP and numba limited to one thread), after warming up.
* The naive pipeline computes the same per-beat features with separate librosa
  calls, each recomputing its own spectrogram from the waveform, and reduces
  every feature to beats with its own ``librosa.util.sync`` call.
* Both wall time and this process's CPU time are reported: on a shared
  machine the CPU time is the honest "per core" figure, since wall time also
  counts waiting for a core.
* It also times ``warm_up()`` in a fresh Python process (numba compilation).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # "per core": set before numpy and numba load

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from editing.audio import ANALYSIS_SR, HOP_LENGTH, N_FFT, analyze, load_audio, warm_up  # noqa: E402
from editing.demo import write_demo_corpus  # noqa: E402


def naive_analysis(y: np.ndarray, sr: int) -> np.ndarray:
    """The same per-beat features, one librosa call (and one spectrogram) per feature."""
    kw = {"n_fft": N_FFT, "hop_length": HOP_LENGTH}
    _, beats = librosa.beat.beat_track(y=y, sr=sr, hop_length=HOP_LENGTH)
    logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=40, **kw))
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_mels=40, **kw)
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, tuning=0.0, **kw)
    contrast = librosa.feature.spectral_contrast(y=y, sr=sr, **kw)
    tonnetz = librosa.feature.tonnetz(y=y, sr=sr, chroma=librosa.feature.chroma_stft(y=y, sr=sr, tuning=0.0, **kw))
    onset = librosa.onset.onset_strength(y=y, sr=sr, n_mels=40, **kw)[None]
    rms_db = librosa.amplitude_to_db(librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP_LENGTH))
    centroid = librosa.feature.spectral_centroid(y=y, sr=sr, **kw)
    bandwidth = librosa.feature.spectral_bandwidth(y=y, sr=sr, **kw)
    rolloff = librosa.feature.spectral_rolloff(y=y, sr=sr, **kw)
    flatness = librosa.feature.spectral_flatness(y=y, **kw)
    S = np.abs(librosa.stft(y, **kw))
    flux = np.pad(0.5 * np.abs(np.diff(S / (S.sum(axis=0) + 1e-10), axis=1)).sum(axis=0), (1, 0))[None]
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP_LENGTH)
    P = np.abs(librosa.stft(y, **kw)) ** 2
    band = np.digitize(librosa.fft_frequencies(sr=sr, n_fft=N_FFT), [250.0, 4000.0])
    band_power = np.stack([P[band == k].sum(axis=0) for k in range(3)])
    per_beat = [
        librosa.util.sync(x, beats, aggregate=np.mean)
        for x in (logmel, mfcc, chroma, contrast, tonnetz, onset, rms_db, centroid, bandwidth, rolloff, flatness, flux, zcr, band_power)
    ]
    per_beat.append(librosa.util.sync(mfcc[:13], beats, aggregate=np.std))
    per_beat.append(librosa.util.sync(onset, beats, aggregate=np.max))
    per_beat.append(librosa.util.sync(rms_db, beats, aggregate=np.max))
    return np.concatenate(per_beat).T.astype(np.float32)


def best_times(pipelines: dict[str, object], signals: list[np.ndarray], repeats: int) -> dict[str, tuple[float, float]]:
    """(wall seconds, CPU seconds) per pipeline for the corpus: sums over tracks of each track's fastest run.

    The runs are interleaved (track by track, pipeline by pipeline) and the
    minimum kept, so load from other processes on a shared machine disturbs
    both pipelines alike and as little as possible.  With one thread, this
    process's CPU time is the time of one core even when others compete for it.
    """
    wall = {name: np.full(len(signals), np.inf) for name in pipelines}
    cpu = {name: np.full(len(signals), np.inf) for name in pipelines}
    for _ in range(repeats):
        for k, y in enumerate(signals):
            for name, fn in pipelines.items():
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                fn(y)
                wall[name][k] = min(wall[name][k], time.perf_counter() - start_wall)
                cpu[name][k] = min(cpu[name][k], time.process_time() - start_cpu)
    return {name: (float(wall[name].sum()), float(cpu[name].sum())) for name in pipelines}


def fresh_process_warm_up_seconds() -> tuple[float, float]:
    code = (
        "import os, time\n"
        "t0 = time.perf_counter()\n"
        "from editing.audio import warm_up\n"
        "t1 = time.perf_counter()\n"
        "warm_up()\n"
        "t2 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1)\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    import_s, warm_s = map(float, out.stdout.split())
    return import_s, warm_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import_s, warm_s = fresh_process_warm_up_seconds()
    print(f"fresh process: import editing.audio {import_s:.2f} s, warm_up() {warm_s:.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        signals = [load_audio(p)[0] for p in write_demo_corpus(tmp)]
    minutes = sum(y.size for y in signals) / ANALYSIS_SR / 60.0
    warm_up()
    naive_analysis(signals[0][: 20 * ANALYSIS_SR], ANALYSIS_SR)

    times = best_times(
        {"ours": lambda y: analyze(y, ANALYSIS_SR), "naive": lambda y: naive_analysis(y, ANALYSIS_SR)},
        signals, args.repeats,
    )
    seconds = minutes * 60.0
    print(f"corpus: {len(signals)} demo tracks, {minutes:.2f} min of audio, 1 thread, fastest of {args.repeats} interleaved runs per track")
    for label, name in (("editing.audio.analyze ", "ours"), ("naive librosa pipeline", "naive")):
        wall, cpu = times[name]
        print(
            f"{label}: {wall / minutes:.3f} s wall per minute of audio ({seconds / wall:.0f}x real time); "
            f"{cpu / minutes:.3f} s CPU ({seconds / cpu:.0f}x real time per core)"
        )
    print(
        f"speed-up over naive   : {times['naive'][0] / times['ours'][0]:.2f}x wall, "
        f"{times['naive'][1] / times['ours'][1]:.2f}x CPU"
    )


if __name__ == "__main__":
    main()
