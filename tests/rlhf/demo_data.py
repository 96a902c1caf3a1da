"""Demo-corpus comparisons judged by simulated annotators: the data the learning tests train on.

Real audio end to end: demo tracks are synthesised, ingested (beat tracking,
features), edits are rendered by ``annotations.services.edit_create`` and
judged through the annotators' own services by ``rlhf.evidence.simulate``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from annotations.models import Comparison, Track
from annotations.services import comparison_create, edit_create, track_ingest, track_load_analysis, track_load_audio
from editing.baselines import BAR_CUT, BASELINE_EDIT_SOURCES, RANDOM, bar_aligned_cut, random_actions
from editing.demo import write_demo_corpus
from editing.edit import reachable_target

EXCERPT_BEATS = 32
# Retarget lengths of the 32-beat passages: shortening and lengthening.
TARGETS = (20, 24, 28, 40, 48)


def demo_tracks(folder: Path, *, n_tracks: int = 6) -> list[Track]:
    return [track_ingest(path=p)[0] for p in write_demo_corpus(folder, n_tracks=n_tracks)]


def demo_comparisons(tracks: list[Track], *, edits_per_excerpt: int, excerpt_step: int, seed: int,
                     required_judgements: int = 3) -> list[Comparison]:
    """Per passage (every ``excerpt_step`` beats, one target each, shortening or lengthening):
    random retargets and a bar-aligned one, compared in a ring."""
    rng = np.random.default_rng(seed)
    comparisons = []
    for track in tracks:
        analysis, y = track_load_analysis(track), track_load_audio(track)
        for start in range(0, analysis.n_beats - EXCERPT_BEATS + 1, excerpt_step):
            bars = analysis.bar_positions[start : start + EXCERPT_BEATS]
            target = reachable_target(bars, int(rng.choice(TARGETS)))
            common = dict(track=track, excerpt_start=start, n_source_beats=EXCERPT_BEATS, target_beats=target,
                          analysis=analysis, y=y)
            edits = [edit_create(actions=bar_aligned_cut(bar_positions=bars, target_beats=target),
                                 source=BASELINE_EDIT_SOURCES[BAR_CUT], **common)]
            for _ in range(edits_per_excerpt):
                edits.append(edit_create(actions=random_actions(rng, bar_positions=bars, target_beats=target),
                                         source=BASELINE_EDIT_SOURCES[RANDOM], **common))
            unique = list({e.pk: e for e in edits}.values())
            for i in range(len(unique)):
                a, b = unique[i], unique[(i + 1) % len(unique)]
                if a.pk != b.pk and not (len(unique) == 2 and i == 1):
                    comparisons.append(comparison_create(edit_a=a, edit_b=b, proposed_by="test",
                                                         required_judgements=required_judgements))
    return comparisons
