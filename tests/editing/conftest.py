"""Shared fixtures for the editing tests: the demo corpus, written and analysed once per session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from editing.audio import TrackAnalysis, analyze_file
from editing.demo import DEMO_SPECS, read_beats, write_demo_corpus


@pytest.fixture(scope="session")
def demo_corpus_dir(tmp_path_factory) -> Path:
    """A folder holding every demo track (``NAME.wav`` + ``NAME.beats.txt``), seed 0."""
    out = tmp_path_factory.mktemp("demo_corpus")
    write_demo_corpus(out, seed=0, n_tracks=len(DEMO_SPECS))
    return out


@pytest.fixture(scope="session")
def demo_analyses(demo_corpus_dir) -> dict[str, tuple[TrackAnalysis, np.ndarray, np.ndarray]]:
    """Demo track name -> (analysis, mono audio at ANALYSIS_SR, ground-truth beat times in seconds)."""
    analyses = {}
    for spec in DEMO_SPECS:
        analysis, y, _ = analyze_file(demo_corpus_dir / f"{spec.name}.wav")
        truth_times, _ = read_beats(demo_corpus_dir / f"{spec.name}.beats.txt")
        analyses[spec.name] = (analysis, y, truth_times)
    return analyses
