"""The evaluation: two-level intervals, folds of held-out tracks, the figures' layout, and evaluate_loop end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from django.core.management import call_command
from django.core.management.base import CommandError

from annotations.models import Comparison, Edit, Track
from editing.audio import file_sha256
from editing.demo import write_demo_corpus
from rlhf.evidence.evaluation import (
    ARMS,
    LEARNED_ARMS,
    EvaluationError,
    corpus_files,
    eval_track_from_file,
    fold_split,
    format_table,
    seed_run,
    summarise,
)
from rlhf.evidence.listeners import default_listener
from rlhf.evidence.simulate import AnnotatorModel
from rlhf.evidence.statistics import nested_bootstrap_ci, paired_comparison
from tests.rlhf.cycle_data import TINY


def test_two_level_interval_of_a_known_mean():
    assert nested_bootstrap_ci([[0.8] * 20, [0.8] * 5]) == pytest.approx((0.8, 0.8))
    # 1,000 coin flips of p = 0.7 on one track: the 95 % interval is about 0.7 +- 1.96 * sqrt(0.21 / 1000).
    flips = (np.random.default_rng(1).random(1000) < 0.7).astype(float)
    lo, hi = nested_bootstrap_ci([flips])
    assert lo < flips.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 1000), rel=0.15)
    # The same values split over tracks that disagree: excerpts of one track are not independent,
    # so resampling tracks widens the interval well beyond the excerpt-level one.
    tracks = [np.full(50, 0.4), np.full(50, 0.6), np.full(50, 0.9)]
    lo, hi = nested_bootstrap_ci(tracks)
    lo_flat, hi_flat = nested_bootstrap_ci([np.concatenate(tracks)])
    assert lo <= 0.45 and hi >= 0.8 and hi - lo > 4 * (hi_flat - lo_flat)
    with pytest.raises(ValueError, match="at least one value"):
        nested_bootstrap_ci([[], []])


def test_a_better_arm_is_found_better_and_a_copy_of_the_heuristic_level():
    # A toy listener: it prefers the edit with fewer seams.  "better" always has one seam fewer
    # than the heuristic, "copy" makes the heuristic's own edits: 8 tracks, 5 excerpts each.
    annotator = AnnotatorModel()
    rng = np.random.default_rng(0)
    seams = rng.integers(2, 8, size=40)
    tracks = [f"t{i // 5}" for i in range(40)]
    heuristic, better = -seams.astype(float), -(seams - 1).astype(float)
    found = paired_comparison(better, heuristic, same_edit=[False] * 40, tracks=tracks,
                              win_probability=annotator.win_probability, tie_margin=annotator.tie_margin)
    assert found["ci95"][0] > 0.5 and found["better"] == 1.0 and found["worse"] == 0.0
    assert found["mean_diff"] == pytest.approx(1.0) and found["n_tracks"] == 8 and found["n_excerpts"] == 40
    copy = paired_comparison(heuristic, heuristic, same_edit=[True] * 40, tracks=tracks,
                             win_probability=annotator.win_probability, tie_margin=annotator.tie_margin)
    assert copy["ci95"][0] <= 0.5 <= copy["ci95"][1] and copy["identical"] == 1.0
    assert copy["better"] == copy["worse"] == 0.0 and copy["mean_diff_ci95"] == [0.0, 0.0]


def test_folds_rotate_the_held_out_tracks_by_seed():
    files = [Path(f"t{i:02d}.wav") for i in range(19)]
    splits = [fold_split(files, seed=s, n_folds=3) for s in range(3)]
    held = [set(h) for _, h in splits]
    for train, h in splits:
        assert not set(train) & set(h) and set(train) | set(h) == set(files) and len(h) >= 6
    assert not held[0] & held[1] and not held[1] & held[2] and set().union(*held) == set(files)
    assert fold_split(files, seed=3, n_folds=3) == splits[0]  # seed 3 holds out fold 0 again, the same tracks
    with pytest.raises(EvaluationError, match="training at least 2"):
        fold_split(files[:3], seed=0, n_folds=2)
    with pytest.raises(EvaluationError, match="at least 2"):
        fold_split(files, seed=0, n_folds=1)


def test_a_corpus_with_too_few_usable_tracks_is_refused_with_the_count(tmp_path):
    write_demo_corpus(tmp_path, n_tracks=3)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(tmp_path / "short.wav", np.zeros(22050), 22050)
    with pytest.raises(EvaluationError, match="3 usable tracks of 5 audio files, at least 4"):
        corpus_files(tmp_path)


@pytest.mark.slow
@pytest.mark.django_db
def test_held_out_tracks_never_reach_training(storage_root, tmp_path):
    files = write_demo_corpus(tmp_path / "corpus", n_tracks=4)
    train, held_paths = fold_split(files, seed=0, n_folds=2)
    held = [eval_track_from_file(p) for p in held_paths]
    result = seed_run(train_files=train, held_out=held, n_cycles=1, parameters=TINY, listener=default_listener,
                      eval_excerpts=3, baseline_excerpts=8, workdir=tmp_path / "policies")
    held_hashes = {file_sha256(p) for p in held_paths}
    ingested = set(Track.objects.values_list("content_hash", flat=True))
    assert ingested == {file_sha256(p) for p in train} and not held_hashes & ingested
    assert not Edit.objects.exclude(track__content_hash__in=ingested).exists()
    assert not Comparison.objects.filter(edit_a__track__content_hash__in=held_hashes).exists()
    assert sorted(result["held_out_tracks"]) == sorted(p.stem for p in held_paths)
    cycle = result["cycles"][0]
    assert set(cycle["scores"]) == set(cycle["keys"]) == set(ARMS)
    assert all(len(s) == 3 for s in cycle["scores"].values())
    # Best-of-N says where each winner came from (the policy, the learned plan, a departure, the heuristic).
    from rlhf.learning.policy import BEST_OF_N_SOURCES

    assert set(cycle["best_of_n_sources"]) == set(BEST_OF_N_SOURCES) and sum(cycle["best_of_n_sources"].values()) == 3
    assert {e["track"] for e in result["excerpts"]} <= set(result["held_out_tracks"])
    # Every heuristic-vs-challenger pair is one the listener can tell apart, on a held-out track.
    for pair in cycle["pairs"]:
        assert abs(pair["listener"]) >= AnnotatorModel().tie_margin and pair["track"] in result["held_out_tracks"]
    # The curve: the learned planner retrained on every judgement, then per selection strategy.
    assert {p["selection"] for p in result["curve"]} >= {"all", "baseline"}
    assert max(p["judgements"] for p in result["curve"] if p["selection"] == "all") == cycle["judgements"]
    # A studio that already holds a held-out track is refused: it could have trained on it.
    from annotations.services import track_ingest

    track_ingest(path=held_paths[0])
    with pytest.raises(EvaluationError, match="are in the studio"):
        seed_run(train_files=train, held_out=held, n_cycles=1, parameters=TINY, listener=default_listener,
                 eval_excerpts=3, baseline_excerpts=8, workdir=tmp_path / "policies")


def _seed_result(seed: int, shift: dict[str, float]) -> dict:
    """A seed's raw result with known scores: 2 held-out tracks x 3 excerpts, one cycle."""
    base = np.array([-3.0, -2.0, -4.0, -1.0, -2.5, -3.5])
    scores = {arm: list(base + shift.get(arm, -2.0)) for arm in ARMS}
    keys = {arm: [f"{arm}{i}" for i in range(6)] for arm in ARMS}
    keys["heuristic_best_of_n"] = list(keys["heuristic"])  # the chooser kept the heuristic's own plan
    scores["heuristic_best_of_n"] = list(scores["heuristic"])
    pairs = [{"track": f"s{seed}t{i % 2}", "arms": ["learned_planner"] if i % 2 else ["policy", "policy_best_of_n"],
              "listener": 1.0, "reward_model": 0.3, "dense": -0.1, "heuristic_cost": -1.0,
              "seam_model": 0.2 if i else -0.2} for i in range(4)]
    return {"seed": seed, "excerpts": [{"track": f"s{seed}t{i // 3}"} for i in range(6)],
            "cycles": [{"cycle": 1, "judgements": 300, "scores": scores, "keys": keys, "pairs": pairs}],
            "curve": [{"selection": "all", "judgements": n, "arm": "learned_planner",
                       "scores": list(base + 1.0), "keys": [f"l{i}" for i in range(6)],
                       "heuristic_keys": keys["heuristic"]} for n in (100, 300)]}


def test_summary_layout_from_known_scores():
    shift = {"heuristic": 0.0, "learned_planner": 1.0, "policy": -1.0}
    summary = summarise([_seed_result(0, shift), _seed_result(1, shift)])
    final = summary["final"]
    assert set(final) == set(ARMS) and all(set(final[a]) == set(ARMS) - {a} for a in ARMS)
    cell = final["learned_planner"]["heuristic"]
    assert cell["better"] == 1.0 and cell["mean_diff"] == pytest.approx(1.0) and cell["ci95"][0] > 0.5
    assert cell["n_excerpts"] == 12 and cell["n_tracks"] == 4
    assert final["policy"]["heuristic"]["worse"] == 1.0
    # The compute-matched heuristic kept its own plans: identical, level.
    matched = final["heuristic_best_of_n"]["heuristic"]
    assert matched["identical"] == 1.0 and matched["win_rate"] == pytest.approx(0.5)
    reward_model = dict(summary["reward_model"])
    by_challenger = reward_model.pop("by_challenger")
    assert reward_model == {"accuracy": 1.0, "dense_accuracy": 0.0, "heuristic_cost_accuracy": 0.0,
                            "ci95": [1.0, 1.0], "n_pairs": 8, "n_tracks": 4}
    assert set(by_challenger) == {"learned_planner", "policy", "policy_best_of_n"}
    assert by_challenger["learned_planner"]["n_pairs"] == 4 and by_challenger["policy"]["n_pairs"] == 4
    assert summary["seam_model"]["accuracy"] == 0.75 and summary["seam_model"]["n_pairs"] == 8
    # Per challenger: the seam model is right on every learned-planner pair, wrong on half of the others.
    assert summary["seam_model"]["by_challenger"]["learned_planner"]["accuracy"] == 1.0
    assert summary["seam_model"]["by_challenger"]["policy"]["accuracy"] == 0.5
    curve = {(p["selection"], p["point"], p["arm"]): p for p in summary["curve"]}
    assert curve[("all", "100", "learned_planner")]["win_rate"] > 0.5
    assert curve[("all", "total", "learned_planner")]["judgements"] == 300
    assert {arm for (selection, _, arm) in curve if selection == "cycles"} == set(LEARNED_ARMS)


def test_the_table_reports_ppo_as_its_own_arm_and_says_when_the_learned_planner_beats_it():
    shift = {"heuristic": 0.0, "learned_planner": 1.0, "policy": -1.0, "policy_best_of_n": 1.0}
    table = format_table(summarise([_seed_result(0, shift), _seed_result(1, shift)]))
    rows = [line.split()[:2] for line in table.splitlines()]
    assert ["learned_planner", "policy"] in rows and ["learned_planner", "policy_best_of_n"] in rows
    assert ["policy", "heuristic"] in rows and ["policy_best_of_n", "heuristic_best_of_n"] in rows
    assert "learned_planner vs policy: the learned planner beats PPO" in table
    assert "learned_planner vs policy_best_of_n: no difference shown between the learned planner and PPO" in table


OUTSIDE_LISTENER = '''
"""An outside listener with its own rule: count seams, nothing else (fewer is better)."""

def fewest_seams(clip):
    return -float(len(clip.seam_seconds))


def no_arguments():
    return 1.0


def not_a_number(clip):
    return float("nan")
'''

TINY_OPTIONS = dict(ppo_timesteps=512, ppo_n_envs=4, ppo_n_steps=64, ppo_batch_size=64, rm_members=2, rm_max_epochs=3,
                    n_excerpts=4, n_pairs=6, ppo_imitation_episodes=16, departure_pairs=3, verbosity=0)


@pytest.mark.slow
def test_evaluate_loop_takes_an_outside_listener_resumes_and_runs_seeds_side_by_side(tmp_path, capsys):
    listener = tmp_path / "outside.py"
    listener.write_text(OUTSIDE_LISTENER)
    corpus = tmp_path / "corpus"
    write_demo_corpus(corpus, n_tracks=4)
    out = tmp_path / "figures.json"
    options = dict(corpus=str(corpus), seeds=2, cycles=1, folds=2, listener=f"{listener}:fewest_seams",
                   eval_excerpts=4, baseline_excerpts=8, **TINY_OPTIONS)
    call_command("evaluate_loop", out=str(out), jobs=2, **options)
    data = json.loads(out.read_text())
    assert data["listener"].endswith(":fewest_seams")
    # Each seed held out its own fold: all four tracks were held out once.
    assert data["corpus"]["tracks"] == 4 and data["corpus"]["distinct_held_out"] == 4
    assert data["judgements_per_seed"] > 0
    for arm in ARMS:
        for opponent in set(ARMS) - {arm}:
            cell = data["final"][arm][opponent]
            assert 0.0 <= cell["ci95"][0] <= cell["win_rate"] <= cell["ci95"][1] <= 1.0
            assert cell["better"] + cell["worse"] + cell["level"] + cell["identical"] == pytest.approx(1.0, abs=1e-3)
            assert cell["mean_diff_ci95"][0] <= cell["mean_diff"] <= cell["mean_diff_ci95"][1]
            assert cell["n_excerpts"] == 8 and cell["n_tracks"] == 4
    for model in ("reward_model", "seam_model"):
        assert set(data[model]) >= {"accuracy", "dense_accuracy", "heuristic_cost_accuracy", "ci95", "n_pairs"}
    assert all(set(p) >= {"selection", "judgements", "arm", "win_rate", "ci95"} for p in data["curve"])
    # Every score is the outside rule's: minus a whole number of seams.
    scores = [s for r in data["per_seed"] for c in r["cycles"] for values in c["scores"].values() for s in values]
    assert all(s <= 0 and float(s).is_integer() for s in scores)
    assert out.with_suffix(".png").stat().st_size > 0
    # Resumed: the finished seeds are kept, not run again; the figures are the same.
    capsys.readouterr()
    call_command("evaluate_loop", out=str(out), resume=True, **options)
    assert capsys.readouterr().out.count("finished earlier, kept") == 2
    assert json.loads(out.read_text())["final"] == data["final"]
    # With other settings, a resume is refused instead of mixing two experiments.
    with pytest.raises(CommandError, match="other settings"):
        call_command("evaluate_loop", out=str(out), resume=True, **{**options, "eval_excerpts": 5})
    # One seed at a time gives the same figures as two side by side.
    one_by_one = tmp_path / "one-by-one.json"
    call_command("evaluate_loop", out=str(one_by_one), jobs=1, **options)
    assert json.loads(one_by_one.read_text())["final"] == data["final"]


@pytest.mark.slow
def test_a_broken_listener_is_refused_before_any_training(tmp_path):
    listener = tmp_path / "outside.py"
    listener.write_text(OUTSIDE_LISTENER)
    corpus = tmp_path / "corpus"
    write_demo_corpus(corpus, n_tracks=4)
    out = tmp_path / "figures.json"
    for name, message in (("absent", "has no 'absent'"), ("no_arguments", "failed on a probe clip.*TypeError"),
                          ("not_a_number", "not a finite score")):
        with pytest.raises(CommandError, match=message):
            call_command("evaluate_loop", corpus=str(corpus), listener=f"{listener}:{name}", out=str(out))
    with pytest.raises(CommandError, match="cannot be imported"):
        call_command("evaluate_loop", corpus=str(corpus), listener="no_such_module:score", out=str(out))
    assert not out.exists() and not (tmp_path / "figures.seeds" / "seed0").exists()
