"""A small studio for the cycle tests: demo tracks, baseline comparisons judged by simulated annotators."""
from __future__ import annotations

from pathlib import Path

from annotations.models import Track
from annotations.services import baseline_comparisons_create, track_ingest
from editing.demo import write_demo_corpus
from rlhf.cycle.parameters import CycleParameters
from rlhf.evidence.simulate import annotators_simulate

# A few hundred PPO steps, a two-member reward model for a few epochs: seconds, not minutes.
TINY = CycleParameters(
    ppo_timesteps=512, ppo_n_envs=4, ppo_n_steps=64, ppo_batch_size=64, rm_members=2, rm_max_epochs=3,
    n_excerpts=4, n_pairs=6, random_share=0.34, ppo_imitation_episodes=16, departure_pairs=3,
)


def small_studio(folder: Path, *, n_tracks: int = 3, baseline_excerpts: int = 10) -> list[Track]:
    """Ingest demo tracks, propose baseline comparisons and let simulated annotators judge them all."""
    tracks = [track_ingest(path=p)[0] for p in write_demo_corpus(folder, n_tracks=n_tracks)]
    for i, track in enumerate(tracks):
        baseline_comparisons_create(track=track, n_excerpts=baseline_excerpts, seed=i)
    annotators_simulate(n_annotators=3, seed=0)
    return tracks


def artifact_files(root: Path, folder: str) -> set[str]:
    """Files under ``root / folder``, as storage-relative names."""
    base = root / folder
    return {p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()} if base.is_dir() else set()


def partial_files(root: Path) -> list[Path]:
    return list((root / "tmp").glob("*.partial")) if (root / "tmp").is_dir() else []


def judged_pairs(*, n_pairs: int, n_tracks: int = 2, proposed_by: str = "test", choices: str = "ab") -> list:
    """``n_pairs`` comparisons spread over ``n_tracks`` factory tracks, each judged once (choices cycle through
    ``choices``): the rows a cycle's preflight counts, without audio analysis."""
    from tests.annotations.factories import make_comparison, make_judgement, make_track, make_user

    tracks = [make_track() for _ in range(n_tracks)]
    annotator = make_user()
    comparisons = [make_comparison(track=tracks[i % n_tracks], proposed_by=proposed_by) for i in range(n_pairs)]
    for i, comparison in enumerate(comparisons):
        make_judgement(annotator, comparison, choice=choices[i % len(choices)])
    return comparisons


def finished_cycles() -> dict:
    """Two finished cycles as their rows would stand, without training: the second has a report card.

    The figures are of the size a studio of ten tracks gives (its reward model split by track);
    the held-out summary has the shape ``rlhf.cycle.reward_services.reward_model_holdout_accuracy``
    writes.  Comparisons of the second
    cycle put its policy against the bar-aligned cut and its parent, judged by two annotators.
    """
    from editing.spaces import spaces_spec
    from rlhf.models import Cycle, PolicyVersion, RewardModelVersion
    from tests.annotations.factories import make_comparison, make_edit, make_judgement, make_track, make_user

    def reward_model(parent=None, **metrics):
        return RewardModelVersion.objects.create(
            artifact="reward_models/x.pt", artifact_sha256="0" * 64, feature_version="test", n_features=125,
            judgements_sha256="0" * 64, reward_mean=0.0, reward_std=1.0, parent=parent, metrics=metrics)

    def policy(rm, parent=None, *, start, end):
        updates = [{"update": k, "num_timesteps": 512 * k, "n_episodes": 8, "mean_learned_reward": learned,
                    "mean_dense_reward": dense, "mean_reward": None, "entropy": 1.2, "approx_kl": 0.01}
                   for k, (learned, dense) in enumerate([start, end], start=1)]
        return PolicyVersion.objects.create(
            artifact="policies/x.zip", artifact_sha256="0" * 64, spaces_spec=spaces_spec(), reward_model=rm,
            parent=parent, num_timesteps=2048, metrics={"mean_learned_reward": end[0], "mean_dense_reward": end[1],
                                                        "per_update": updates})

    rm1 = reward_model(accuracy=0.64, baseline_accuracy=0.67)
    rm2 = reward_model(rm1, accuracy=0.81, baseline_accuracy=0.67)
    v1 = policy(rm1, start=(-0.52, 0.41), end=(0.08, 0.55))
    v2 = policy(rm2, v1, start=(-0.21, 0.53), end=(0.37, 0.62))
    first = Cycle.objects.create(status=Cycle.Status.DONE, is_running=False, progress=1.0, parameters={},
                                 reward_model_version=rm1, policy_version=v1,
                                 metrics={"reward_model": {"label": rm1.label, "accuracy": 0.64}})
    holdout = {"split_unit": "track", "n_tracks": 10, "min_tracks_for_track_split": 8,
               "tracks": [7, 9], "n_judgements": 112, "n_pairs": 40, "n_decided": 36,
               "after": {"label": rm2.label, "accuracy": 29 / 36}, "dense": {"accuracy": 24 / 36},
               "before": {"label": rm1.label, "accuracy": 22 / 36, "n_trained_on": 0}}
    second = Cycle.objects.create(
        status=Cycle.Status.DONE, is_running=False, progress=1.0, parameters={"ppo_timesteps": 2048},
        reward_model_version=rm2, policy_version=v2, log="done\n",
        metrics={"reward_model": {"label": rm2.label, "accuracy": 0.81, "baseline_accuracy": 0.67,
                                  "split_unit": "track", "holdout": holdout},
                 "policy": {"label": v2.label}, "proposal": {"n_comparisons": 6}})
    track = make_track()
    mine = [make_edit(track, range(12), source=v2.source) for _ in range(3)]
    cut = make_edit(track, [*range(4), *range(8, 16)], source="baseline:bar_cut")
    parent = make_edit(track, [*range(6), *range(10, 16)], source=v1.source)
    comparisons = [make_comparison(edit_a=e, edit_b=cut, proposed_by=f"cycle {second.pk}") for e in mine]
    comparisons += [make_comparison(edit_a=parent, edit_b=e, proposed_by=f"cycle {second.pk}") for e in mine]
    alice, bob = make_user("alice"), make_user("bob")
    for c in comparisons[:3]:  # against the cut: 5 of 6 for the policy
        make_judgement(alice, c, choice="a")
        make_judgement(bob, c, choice="a" if c is not comparisons[2] else "b")
    for c in comparisons[3:]:  # against its parent (edit A): 4 of 6 for the policy
        make_judgement(alice, c, choice="b")
        make_judgement(bob, c, choice="b" if c is comparisons[3] else "a")
    return {"first": first, "second": second, "rm1": rm1, "rm2": rm2, "v1": v1, "v2": v2,
            "comparisons": comparisons}
