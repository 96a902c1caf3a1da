"""The evaluation: bootstrap intervals, the held-out split, and evaluate_loop with an outside listener."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import Comparison, Edit, Track
from editing.audio import file_sha256
from editing.demo import write_demo_corpus
from rlhf.evidence.evaluation import (
    ARMS,
    BEST_OF_ROW,
    EvaluationError,
    bootstrap_ci,
    eval_track_from_file,
    seed_run,
    split_tracks,
    summarise,
)
from rlhf.evidence.listeners import default_listener
from tests.rlhf.cycle_data import TINY


def test_bootstrap_interval_of_a_known_mean():
    constant = np.full((3, 20), 0.8)
    assert bootstrap_ci(constant) == pytest.approx((0.8, 0.8))
    # 1,000 coin flips of p = 0.7 in one seed: the 95 % interval is about 0.7 +- 1.96 * sqrt(0.21 / 1000).
    flips = (np.random.default_rng(1).random((1, 1000)) < 0.7).astype(float)
    lo, hi = bootstrap_ci(flips)
    half = 1.96 * np.sqrt(0.21 / 1000)
    assert lo < flips.mean() < hi
    assert hi - lo == pytest.approx(2 * half, rel=0.15)
    # The same values split over seeds that disagree: resampling seeds widens the interval.
    disagreeing = np.stack([np.full(50, 0.4), np.full(50, 0.6), np.full(50, 0.9)])
    lo, hi = bootstrap_ci(disagreeing)
    assert lo <= 0.45 and hi >= 0.8
    with pytest.raises(EvaluationError, match="bootstrap needs"):
        bootstrap_ci(np.zeros((0, 3)))


def test_the_held_out_split_is_disjoint_complete_and_fixed():
    files = [Path(f"t{i}.wav") for i in range(6)]
    train, held = split_tracks(files, n_held_out=2)
    assert len(held) == 2 and not set(train) & set(held) and set(train) | set(held) == set(files)
    assert split_tracks(files, n_held_out=2) == (train, held)
    with pytest.raises(EvaluationError, match="training needs a track"):
        split_tracks(files, n_held_out=6)


@pytest.mark.slow
@pytest.mark.django_db
def test_held_out_tracks_never_reach_training(storage_root, tmp_path):
    files = write_demo_corpus(tmp_path / "corpus", n_tracks=3)
    train, held_paths = split_tracks(files, n_held_out=1)
    held = [eval_track_from_file(p) for p in held_paths]
    result = seed_run(train_files=train, held_out=held, n_cycles=1, parameters=TINY, listener=default_listener,
                      eval_excerpts=3, baseline_excerpts=8, workdir=tmp_path / "policies")
    held_hash = file_sha256(held_paths[0])
    ingested = set(Track.objects.values_list("content_hash", flat=True))
    assert ingested == {file_sha256(p) for p in train} and held_hash not in ingested
    assert not Edit.objects.exclude(track__content_hash__in=ingested).exists()
    assert not Comparison.objects.filter(edit_a__track__content_hash=held_hash).exists()
    assert result["held_out_tracks"] == [held_paths[0].stem]
    scores = result["cycles"][0]["scores"]
    assert set(scores) == {*ARMS, BEST_OF_ROW, "random", "bar_cut", "heuristic"}
    assert all(len(s) == 3 for s in scores.values())
    # A studio that already holds a held-out track is refused: it could have trained on it.
    from annotations.services import track_ingest

    track_ingest(path=held_paths[0])
    with pytest.raises(EvaluationError, match="are in the studio"):
        seed_run(train_files=train, held_out=held, n_cycles=1, parameters=TINY, listener=default_listener,
                 eval_excerpts=3, baseline_excerpts=8, workdir=tmp_path / "policies")


def test_summary_layout_from_known_scores():
    # Two seeds, one cycle, two excerpts: the mix always scores 1 above dense_only.
    def cycle(mix, dense):
        return {"scores": {"mix": mix, "dense_only": dense, "learned_only": dense, BEST_OF_ROW: mix,
                           "random": [-9, -9], "bar_cut": [-5, -5], "heuristic": [5, 5]}, "first": {},
                "reward_model": {"rm_correct": [1.0, 1.0, 0.0], "dense_correct": [1.0, 0.0, 0.0]}}
    summary = summarise([{"cycles": [cycle([0, 0], [-1, -1])]}, {"cycles": [cycle([-2, -2], [-3, -3])]}])
    final = summary["final"]
    assert set(final) == {*ARMS, BEST_OF_ROW} and "first" not in final[BEST_OF_ROW]
    assert final["mix"]["dense_only"]["win_rate"] == pytest.approx(0.1 * 0.5 + 0.9 / (1 + np.exp(-2)), abs=1e-4)
    assert final["mix"]["heuristic"]["win_rate"] < 0.5 < final["mix"]["random"]["win_rate"]
    lo, hi = final["mix"]["dense_only"]["ci95"]
    assert lo == hi == final["mix"]["dense_only"]["win_rate"]
    assert final["mix"]["reward_model"]["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert final["mix"]["reward_model"]["dense_accuracy"] == pytest.approx(1 / 3, abs=1e-4)


OUTSIDE_LISTENER = '''
"""An outside listener with its own rule: count seams, nothing else (fewer is better)."""

def fewest_seams(clip):
    return -float(len(clip.seam_seconds))
'''


@pytest.mark.slow
def test_evaluate_loop_takes_an_outside_listener(tmp_path):
    listener = tmp_path / "outside.py"
    listener.write_text(OUTSIDE_LISTENER)
    corpus = tmp_path / "corpus"
    write_demo_corpus(corpus, n_tracks=3)
    out = tmp_path / "figures.json"
    call_command("evaluate_loop", corpus=str(corpus), seeds=1, cycles=1, listener=f"{listener}:fewest_seams",
                 out=str(out), workdir=str(tmp_path / "work"), held_out=1, eval_excerpts=4, baseline_excerpts=8,
                 ppo_timesteps=512, ppo_n_envs=4, ppo_n_steps=64, ppo_batch_size=64, rm_members=2, rm_max_epochs=3,
                 n_excerpts=4, n_pairs=6, ppo_imitation_episodes=16, verbosity=0)
    data = json.loads(out.read_text())
    assert data["listener"].endswith(":fewest_seams")
    # The arms, and the best of 8 the retarget page gives by default, against the baselines and the arms.
    for arm in (*ARMS, BEST_OF_ROW):
        for opponent in ("random", "bar_cut", "heuristic", *(a for a in ARMS if a != arm)):
            cell = data["final"][arm][opponent]
            assert 0.0 <= cell["ci95"][0] <= cell["win_rate"] <= cell["ci95"][1] <= 1.0
        assert set(data["final"][arm]["reward_model"]) >= {"accuracy", "dense_accuracy"}
    # Every score is the outside rule's: minus a whole number of seams.
    scores = [s for c in data["per_seed"][0]["cycles"] for values in c["scores"].values() for s in values]
    assert all(s <= 0 and float(s).is_integer() for s in scores)
    assert out.with_suffix(".png").stat().st_size > 0
    with pytest.raises(CommandError, match="has no 'absent'"):
        call_command("evaluate_loop", corpus=str(corpus), listener=f"{listener}:absent", out=str(out))
