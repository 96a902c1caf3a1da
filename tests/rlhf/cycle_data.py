"""A small studio for the cycle tests: demo tracks, baseline comparisons judged by simulated annotators."""
from __future__ import annotations

from pathlib import Path

from annotations.models import Track
from annotations.services import baseline_comparisons_create, track_ingest
from editing.demo import write_demo_corpus
from rlhf.cycle import CycleParameters
from rlhf.simulate import annotators_simulate

# A few hundred PPO steps, a two-member reward model for a few epochs: seconds, not minutes.
TINY = CycleParameters(
    ppo_timesteps=512, ppo_n_envs=4, ppo_n_steps=64, ppo_batch_size=64, rm_members=2, rm_max_epochs=3,
    n_excerpts=4, n_pairs=6, random_share=0.34,
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
